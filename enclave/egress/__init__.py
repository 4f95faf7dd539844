"""Egress: how outputs leave the enclave (issue 5).

A researcher gathers files from their project's ``outbox/`` into a request (``service``);
on submit every file is copied into a content-addressed quarantine (``quarantine``) and
checked (``checks``); independent reviewers vote per file (``review``); an approved request
is copied to the export store with a signed release record (``release``, ``signing``).
The request's life is a state machine held as data (``workflow``); every change is audited
and announced after commit (``notify``). ``policy`` holds the site's egress settings.
"""
