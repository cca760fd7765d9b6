"""The audio of conversations, recorded in the browser and uploaded in chunks (store.py, views.py)."""
