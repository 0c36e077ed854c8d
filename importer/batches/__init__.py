"""Bulk import: reading a manifest of snapshots, and tags typed at import time.

Pure functions over text: nothing here touches the database or the network, so the views and
the dialog can call them on anything a person pastes or uploads.
"""
