"""`ferryman verify`: prove each converted job runs the same pods under the real controllers of both sides.

:func:`verify_paths` runs it (the demo and the tests call it); :func:`render_text` and :func:`render_json`
write its report; :mod:`ferryman_dev.verify.command` is the `ferryman verify` command.
"""

from ferryman_dev.verify.report import render_json, render_text
from ferryman_dev.verify.run import JobRecord, VerifyReport, verify_paths

__all__ = ["JobRecord", "VerifyReport", "render_json", "render_text", "verify_paths"]
