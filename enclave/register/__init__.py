"""The public transparency register: what each approved project uses data for, on what
lawful basis, who controls the data, what was released, and how to opt out.

``details`` validates the fields a project application adds for the register and words
its lawful basis for the public; ``policy`` reads ``policies/register.yaml``; ``service``
builds the public entries (and nothing about the people on a project); ``feed`` maps them
onto the fields of the HDR UK Data Use Register, as JSON and CSV.
"""
