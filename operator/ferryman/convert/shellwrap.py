"""Per-node values no TrainJob field can express, computed by a shell wrapped around the node's command.

v1 set some variables differently on one role than on another (``TF_CONFIG``'s task type, PaddleJob's
``PADDLE_MASTER`` on node 0). Every v2 node runs one template, so the wrapper computes them from the node's
index (``JOB_COMPLETION_INDEX``, set in every container of an Indexed Job) and then ``exec``s the original
command with its arguments: the process tree is the same as in v1.
"""

from __future__ import annotations

from typing import Any

NODE_INDEX = "JOB_COMPLETION_INDEX"


def quote(text: str) -> str:
    """``text`` as one single-quoted shell word."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def wrap_command(trainer: dict[str, Any], script: str) -> bool:
    """Run ``script`` before ``trainer``'s command (its args follow as before); False, changing nothing,
    when the job has no command (the image's entrypoint is unknown, so it cannot be exec'd)."""
    command = trainer.get("command")
    if not isinstance(command, list) or not command:
        return False
    trainer["command"] = ["/bin/sh", "-c", f'{script}; exec "$@"', "sh", *command]
    return True
