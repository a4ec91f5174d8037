"""The results store: one immutable, sealed directory per trained model (or study job).

- `fci.store.store`: `Store` (check, heal, quarantine, verify/repair, save, share);
- `fci.store.entries`: an entry's files, its key, reading, verifying and sealing;
- `fci.store.claims`: who is making an entry now; expiry (`$FCI_CLAIM_TTL`);
- `fci.store.formats`: the formats written and read, and the migration from 1;
- `fci.store.recompute`: re-verifying an entry by recomputing what it records;
- `fci.store.quarantine`: moving what cannot be used aside, with its reason;
- `fci.store.graceful`: every stop of a command (Ctrl-C, SIGTERM, a full disk) in one line;
- `fci.store.files`: reads that never follow links, the one writer, owners of temporary files;
- `fci.store.cli`: `main`, the `python -m fci.store` command.

`python -m fci.store verify|repair DIR [--deep] [--claim-ttl SECONDS]` checks a store
by hand (docs/store.md).
"""

from fci.store.claims import CLAIM_TTL, Claim, resolve_claim_ttl
from fci.store.cli import main
from fci.store.entries import StoreEntry, config_key
from fci.store.errors import FormatError, NotRecomputable, SettingError, StoreError, UnsealedError
from fci.store.formats import FORMAT_VERSION
from fci.store.graceful import Terminated, graceful
from fci.store.recompute import RECOMPUTE
from fci.store.store import Store, Survey

__all__ = ["CLAIM_TTL", "FORMAT_VERSION", "RECOMPUTE", "Claim", "FormatError", "NotRecomputable", "SettingError", "Store",
           "StoreEntry", "StoreError", "Survey", "Terminated", "UnsealedError", "config_key", "graceful", "main", "resolve_claim_ttl"]
