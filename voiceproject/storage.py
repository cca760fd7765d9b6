"""
Static files storage for production (DEBUG off): WhiteNoise's compressed manifest storage, which
gives every file a content-hashed name that can be cached forever, with one addition.

Our pages load plain ES modules (static/voice/, static/history/) that import each other by
relative path (`import { Outbox } from "./outbox.js";`). By default only the entry module gets a
hashed URL: its imports would still fetch the unhashed names, which cannot be cached for long,
can mix two releases' modules for a minute after a deploy, and miss the hashed
`<link rel="modulepreload">` of the chat page (a second download of each module). Django can
rewrite those import and export statements to the hashed names too; it is off by default
because it matches statements with a regular expression, so they must be written plainly:
static `import … from "./x.js";` with the semicolon, which tests/test_static_files.py checks
by running collectstatic on the real files.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    support_js_module_import_aggregation = True
