"""The commands a page of the docs shows, as a test runs them: each ```sh block in order, one command per line
(a line ending in a backslash continues; a heredoc runs to its terminator inside the block)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

# A fence may be indented (a block inside a list item); its body is then indented as much.
SH_BLOCK = re.compile(r"^( *)```sh\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
HEREDOC = re.compile(r"<<-?'?(\w+)'?[^\n]*\n(.*?)^\1$", re.MULTILINE | re.DOTALL)


def shell_blocks(path: Path) -> list[str]:
    """The text of every ```sh block of the Markdown file at path, in order, without the fence's indentation."""
    return [textwrap.dedent(body) for _, body in SH_BLOCK.findall(path.read_text())]


def heredocs(block: str) -> list[str]:
    """The bodies of the heredocs in a block (what `kubectl apply -f - <<'EOF'` sends), in order."""
    return [body for _, body in HEREDOC.findall(block)]
