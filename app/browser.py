"""Headless Chromium for the browser test and the latency bench: Debian's
`chromium` and `chromedriver`, started offline (nothing is downloaded)."""

from __future__ import annotations

import os
import shutil
import tempfile

__all__ = ["chrome_options", "chromium_available"]

_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium_available() -> bool:
    return bool((shutil.which("chromium") or shutil.which("chromium-browser")) and shutil.which("chromedriver"))


def chrome_options(width: int = 1600, height: int = 2000):
    """Selenium Chrome options: headless, no network side traffic, a fresh profile."""
    from selenium.webdriver.chrome.options import Options

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch drivers
    options = Options()
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    for arg in (*_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={tempfile.mkdtemp(prefix='fci-chromium-')}"):
        options.add_argument(arg)
    return options
