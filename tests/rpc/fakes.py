"""Small Args/Reply types standing in for the kukeonv1 ones in wire-layer tests."""

from kukeond.errors import KukeonError


class EchoArgs:
    def __init__(self, value=None):
        self.value = value

    @classmethod
    def from_wire(cls, obj):
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise ValueError("json: cannot unmarshal number into Go value of type EchoArgs")
        return cls(obj.get("Value"))


class EchoReply:
    def __init__(self, value=None, err=None):
        self.value = value
        self.err = err

    @classmethod
    def failure(cls, exc):
        kind = getattr(exc, "kind", "Unknown")
        return cls(None, {"Kind": kind, "Message": str(exc)})

    def to_wire(self):
        return {"Value": self.value, "Err": self.err}


TYPES = {
    "Echo": (EchoArgs, EchoReply),
    "Slow": (EchoArgs, EchoReply),
    "Boom": (EchoArgs, EchoReply),
    "Fail": (EchoArgs, EchoReply),
    "BoomLater": (EchoArgs, EchoReply),
    "Missing": (EchoArgs, EchoReply),
}


def make_handlers(clock=None, pending=None):
    """Echo answers at once; Slow waits for the test; Boom raises; Fail raises a KukeonError."""
    from twisted.internet import defer

    def echo(args):
        return EchoReply(args.value)

    def slow(args):
        d = defer.Deferred()
        d.addCallback(lambda _: EchoReply(args.value))
        if pending is not None:
            pending.append(d)
        return d

    def boom(args):
        raise RuntimeError("kaboom")

    async def boom_later(args):
        raise RuntimeError("kaboom later")

    async def fail(args):
        raise KukeonError("realm name is required", kinds=frozenset({"RealmNameRequired"}))

    return {"Echo": echo, "Slow": slow, "Boom": boom, "BoomLater": boom_later, "Fail": fail}


class FakePool:
    """Stands in for the large-frame decoder's thread pool: each job runs when the test says."""

    def __init__(self):
        self.jobs = []

    def run(self, fn, *args, **kwargs):
        from twisted.internet import defer

        d = defer.Deferred()
        self.jobs.append((fn, args, kwargs, d))
        return d

    def finish(self, index=0):
        """Run a queued job here and fire its Deferred with the outcome."""
        from twisted.python.failure import Failure

        fn, args, kwargs, d = self.jobs.pop(index)
        try:
            result = fn(*args, **kwargs)
        except BaseException:  # noqa: BLE001 - handed to the Deferred, as a pool does
            d.errback(Failure())
        else:
            d.callback(result)
