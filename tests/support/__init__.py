"""Test support, one module per job: factories (users, signed-in clients, conversations, talks),
events (recorded Realtime streams, event builders), processes (live server, manage.py, database URL),
api (the JSON API's helpers), browser (what the browser tests do with the page)."""
