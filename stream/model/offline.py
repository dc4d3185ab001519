"""Keep every model path off the network, whatever libraries are installed.

``stream.model`` calls ``keep_offline()`` when it is imported, before any of transformers, peft, bitsandbytes or
kernels is: those libraries read their switches from the environment once, at their own import.

* ``HF_HUB_OFFLINE``: huggingface_hub refuses every request. We load with ``local_files_only`` anyway; this also
  covers libraries that call the hub themselves. bitsandbytes >= 0.50, for one, asks the ``kernels`` package for
  ``kernels-community/quantization-bitsandbytes`` when it is imported on an AVX512-BF16 CPU (and transformers >= 5.25
  installs ``kernels``). Offline, that request fails at once and bitsandbytes falls back to its own CPU kernel.
* ``USE_HUB_KERNELS=NO``: transformers does not swap layers for hub kernels.
* ``DISABLE_KERNEL_MAPPING=1``: the same switch in ``kernels`` itself.

These are set, not defaulted: adaptlog never downloads a model, so a stray ``HF_HUB_OFFLINE=0`` in a pod's
environment must not turn a model load into a hang in a cluster without egress. If huggingface_hub was imported
before us (a notebook, a test runner), its constant is switched too, since it was read at its import.
"""

from __future__ import annotations

import os
import sys
from typing import Any

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "USE_HUB_KERNELS": "NO",
    "DISABLE_KERNEL_MAPPING": "1",
}


def keep_offline() -> None:
    os.environ.update(OFFLINE_ENVIRONMENT)
    constants: Any = sys.modules.get("huggingface_hub.constants")  # a module: its attributes are not typed
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
