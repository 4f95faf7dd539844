"""The egress meter: counts and bounds what each project server sends to browsers.

``proxy`` is the reverse proxy between the hub's proxy and the servers (a hub-managed
service, ``python -m enclave.meter``); ``accounting`` the sliding windows; ``service``
the database side (limits per tier, audit of content reads and uploads, incidents);
``client`` what the spawner and the web app use to talk to it.
"""
