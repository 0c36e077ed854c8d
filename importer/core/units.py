from __future__ import annotations

GIB = 1024**3


def _count(value: int, unit: str) -> str:
    return f"{value} {unit}{'' if value == 1 else 's'}"


def how_long(seconds: float) -> str:
    """A duration as a person says it, to the second under a minute: "13 seconds", "4 minutes,
    12 seconds", "2 hours, 5 minutes", "1 day, 3 hours" (Django's timesince says "0 minutes"
    for anything under one)."""
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [_count(days, "day"), _count(hours, "hour") if hours else ""]
    elif hours:
        parts = [_count(hours, "hour"), _count(minutes, "minute") if minutes else ""]
    elif minutes:
        parts = [_count(minutes, "minute"), _count(secs, "second") if secs else ""]
    else:
        parts = [_count(secs, "second")]
    return ", ".join(part for part in parts if part)
