"""Process-derived text made safe to show: any local user picks their own process name and
command line, terminal escapes included, and every output (table, CSV, dashboard, metric labels)
must show them as text, never let the terminal act on them."""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """A process-derived string with control characters and undecodable bytes made visible.

    Newlines, tabs, escapes (C0 and C1: ESC and CSI), bidirectional and other format controls and
    lone surrogates (non-UTF-8 bytes decoded with surrogateescape) would break a one-line cell or
    drive the terminal; they become ``\\n``-style escapes instead.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch == " " or ch.isprintable():
            out.append(ch)
            continue
        code = ord(ch)
        category = unicodedata.category(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif category in ("Cs", "Co", "Cn", "Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
