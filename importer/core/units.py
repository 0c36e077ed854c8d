from __future__ import annotations

GIB = 1024**3
