"""JupyterHub glue: authenticator, EnclaveSpawner, enforcement, and the lockdown server
extension loaded inside notebook containers.

Keep this file free of imports: the notebook image imports ``enclave.hub.lockdown``
without the hub's own dependencies (dockerspawner, SQLAlchemy ...) installed.
"""
