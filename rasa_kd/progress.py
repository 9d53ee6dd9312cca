"""Progress bars: one helper for every long loop, so all of them look and switch off alike."""
from typing import Iterable, Optional


def progress_bar(iterable: Optional[Iterable] = None, enabled: bool = True, description: str = "", total: Optional[int] = None,
                 unit: str = "it", leave: bool = True, initial: int = 0):
    """A tqdm bar on standard error; with ``enabled`` False, the same object that draws nothing."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, unit=unit, leave=leave, initial=initial, disable=not enabled)
