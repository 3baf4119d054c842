# ruff: noqa

"""A client library that turns checks off only when its caller's option asks (low: the
caller passing verify=False is what the gate reports); a module's own switch stays high."""
import ssl

VERIFY_TLS = False


def make_context(verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if verify is False:
        ctx.check_hostname = False  # expect: DJ-PY-006@low
        ctx.verify_mode = ssl.CERT_NONE  # expect: DJ-PY-006@low
    return ctx


def module_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not VERIFY_TLS:
        ctx.check_hostname = False  # expect: DJ-PY-006@high
    return ctx


class Client:
    def __init__(self, insecure: bool) -> None:
        self.insecure = insecure
        self.ctx = ssl.create_default_context()

    def configure(self) -> None:
        if self.insecure:
            self.ctx.verify_mode = ssl.CERT_NONE  # expect: DJ-PY-006@low


def fetch_context(verify=False) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False  # expect: DJ-PY-006@high
    return ctx
