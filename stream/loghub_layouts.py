"""The Loghub layouts cut with ``str`` methods instead of their format regex, for the common, well-formed line.

A cutter returns ``(content, timestamp text)`` exactly as the format's regex groups would, or None when the line is
anything it is not sure of (a field that is not plainly printable, a missing separator, a Unicode word character
the regex's ``\\w`` would judge): the caller then asks the regex, which gives the answer or the usual error. So a
cutter only ever has to be right on the lines it accepts; ``tests/test_loghub_layouts.py`` checks that against the
regex on every line of the real data and on generated near-misses.

Why it is exact where it answers: each layout's fields are runs of non-whitespace (or digits) separated by single
spaces, so the regex never backtracks into them, and a field is cut at the same space ``str.split(" ")`` cuts it
at. ``\\d`` (str patterns) is ``str.isdecimal``; ``\\w`` is ``str.isalnum`` or ``_``; a field without whitespace
is checked as ``isprintable()``, which is False for every whitespace character but the space (and for some other
characters, which then go to the regex).

Measured on HDFS (bench/pipeline_bench.py's data): the HDFS regex plus its group lookups took about as long as
this cut, but the fallback-free cut also hands the timestamp over without a ``Match`` object; see
docs/stream-results.md for the whole path.
"""

from __future__ import annotations

from collections.abc import Callable

# (content, timestamp text or None), or None: "ask the regex"
Cut = tuple[str, str | None]
Cutter = Callable[[str], Cut | None]

# The component of a Thunderbird line: the characters of [\w\-.()/@] that are not \w
_COMPONENT_PUNCTUATION = str.maketrans("", "", "_-.()/@")


def cut_hdfs(line: str) -> Cut | None:
    r"""``(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<component>[^:]*): (?P<content>.*)``

    081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-16 src: /10.250.19.102:54106 ...
    """
    if line[6:7] != " " or line[13:14] != " ":
        return None
    pid_end = line.find(" ", 14)
    level_end = line.find(" ", pid_end + 1) if pid_end > 0 else -1
    colon = line.find(":", level_end + 1) if level_end > 0 else -1
    # [^:]* runs to the first colon, which must be followed by a space
    if colon < 0 or line[colon + 1 : colon + 2] != " ":
        return None
    if not (
        line[:6].isdecimal()
        and line[7:13].isdecimal()
        and line[14:pid_end].isdecimal()
        and line[pid_end + 1 : level_end].isalnum()  # "_" is \w too: such a level goes to the regex
    ):
        return None
    return line[colon + 2 :], line[:13]


def cut_bgl(line: str) -> Cut | None:
    r"""``(?P<epoch>\d+) (?P<date>\S+) (?P<node>\S+) (?P<timestamp>\d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.\d+)
    (?P<noderepeat>\S+) (?P<type>\S+) (?P<component>\S+) (?P<level>\S+) ?(?P<content>.*)``

    1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO ...
    """
    fields = line.split(" ", 8)
    if len(fields) < 8:
        return None
    head = fields[:8]
    # all(head): no field is empty (two spaces in a row); printable: no whitespace inside a field, so the level
    # ends at a space and " ?" takes that space
    if not (all(head) and "".join(head).isprintable() and fields[0].isdecimal() and _is_bgl_time(fields[3])):
        return None
    return (fields[8] if len(fields) == 9 else ""), fields[3]


def _is_bgl_time(text: str) -> bool:
    r"""``\d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.\d+``, e.g. 2005-06-03-15.42.50.675872"""
    return (
        len(text) > 20
        and text[4] == text[7] == text[10] == "-"
        and text[13] == text[16] == text[19] == "."
        and (text[:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19] + text[20:]).isdecimal()
    )


def cut_thunderbird(line: str) -> Cut | None:
    r"""``(?P<timestamp>\d+) (?P<date>\S+) (?P<user>\S+) (?P<month>\S+) +(?P<day>\d+) (?P<time>\S+)
    (?P<location>\S+) ?(?:(?P<component>[\w\-.()/@]+)(?:\[(?P<pid>\d+)\])?: )?(?P<content>.*)``

    1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root
    """
    first = line.split(" ", 4)
    if len(first) < 5:
        return None
    rest = first[4].lstrip(" ")  # " +" before the day
    second = rest.split(" ", 3)
    if len(second) < 3:
        return None
    head = first[:4] + second[:3]
    if not (all(head) and "".join(head).isprintable() and first[0].isdecimal() and second[0].isdecimal()):
        return None
    tail = second[3] if len(second) == 4 else ""
    return _after_component(tail), first[0]


def _after_component(tail: str) -> str:
    r"""What ``(?:(?P<component>[\w\-.()/@]+)(?:\[(?P<pid>\d+)\])?: )?(?P<content>.*)`` leaves as content.

    The component and the pid hold no colon, so the ": " can only be the first colon; when the group does not
    match there it matches nowhere, and the content is the whole tail (the regex's answer too).
    """
    colon = tail.find(":")
    if colon < 0 or tail[colon + 1 : colon + 2] != " ":
        return tail
    component = tail[:colon]
    bracket = component.find("[")
    if bracket >= 0:
        pid = component[bracket + 1 : -1]
        if not (component.endswith("]") and pid.isdecimal()):
            return tail
        component = component[:bracket]
    if not component:
        return tail
    words = component.translate(_COMPONENT_PUNCTUATION)
    if words and not words.isalnum():
        return tail
    return tail[colon + 2 :]


CUTTERS: dict[str, Cutter] = {"hdfs": cut_hdfs, "bgl": cut_bgl, "thunderbird": cut_thunderbird}
