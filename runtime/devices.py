"""Stage runtime: devices and placement.

Input: a device name given by a user ('cpu', 'cuda', None).
Output: the canonical device name a jitted function compiles for.
The CUDA backend arrives with its own issue; until then asking for it is an
error that says so.
"""


def devices():
    """The devices needle can run on here."""
    return ["cpu"]


def resolve_device(device):
    if device is None or device == "cpu":
        return "cpu"
    if device == "cuda" or str(device).startswith("cuda"):
        raise NotImplementedError("the CUDA backend is not available yet: needle compiles for "
                                  "'cpu' only in this version")
    raise ValueError(f"unknown device {device!r}; needle knows {devices()}")
