"""Conformance of realms, spaces, stacks and images: the real kuke on the Go kukeond and ours.

Every step runs on both daemons (see ``tests.conformance.harness``); a
difference fails the test unless ``doc/compatibility.md`` lists it.
"""

from __future__ import annotations

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.conformance.harness import Pair
from tests.support.containerd import get_containerd2_socket
from tests.support.image import busybox_image

IMAGE = "docker.io/library/busybox:latest"
R, S, K = "cf", "s", "k"


class HierarchyConformanceTests(TestCase):
    timeout = 240

    def setUp(self):
        self.pair = Pair(self, get_containerd2_socket())

    def ok(self, name, *args, **kwargs):
        """A step the reference must succeed at (the scenario relies on it)."""
        ref, _ours = self.pair.step(name, *args, **kwargs)
        self.assertEqual(ref.code, 0, f"reference failed {name}: {ref.stderr}")

    def test_realms_spaces_stacks(self):
        return threads.deferToThread(self.realms_spaces_stacks)

    def realms_spaces_stacks(self):
        p = self.pair
        p.step("get realms, none yet", "get", "realm")
        p.step("get realms json, none yet", "get", "realm", "-o", "json")
        self.ok("create realm", "create", "realm", R)
        p.step("create realm again", "create", "realm", R)
        p.step("create realm with an invalid name", "create", "realm", "bad_name")
        self.ok("create space", "create", "space", S, "--realm", R)
        p.step("create space again", "create", "space", S, "--realm", R)
        self.ok("create stack", "create", "stack", K, "--realm", R, "--space", S)
        self.ok("create second stack", "create", "stack", "k2", "--realm", R, "--space", S)
        for kind, extra in (
            ("realm", ()),
            ("space", ("--realm", R)),
            ("stack", ("--realm", R, "--space", S)),
        ):
            name = {"realm": R, "space": S, "stack": K}[kind]
            p.step(f"get {kind} list", "get", kind, *extra)
            p.step(f"get {kind} list json", "get", kind, *extra, "-o", "json")
            p.step(f"get {kind} list yaml", "get", kind, *extra, "-o", "yaml")
            p.step(f"get {kind}", "get", kind, name, *extra)
            p.step(f"get {kind} json", "get", kind, name, *extra, "-o", "json")
            p.step(f"get {kind} not found", "get", kind, "nope", *extra)
        p.step("get realm with controllers", "get", "realm", "--show-controllers")
        p.step("get spaces of every realm", "get", "space")
        p.step("delete realm with dependents", "delete", "realm", R)
        p.step("delete space with dependents", "delete", "space", S, "--realm", R)
        self.ok("delete stack", "delete", "stack", "k2", "--realm", R, "--space", S)
        p.step("delete stack again", "delete", "stack", "k2", "--realm", R, "--space", S)
        p.step("delete realm not found", "delete", "realm", "nope")
        self.ok("delete space cascade", "delete", "space", S, "--realm", R, "--cascade")
        p.step("get stacks after cascade", "get", "stack", "--realm", R, "--space", S)
        self.ok("create space anew", "create", "space", "s2", "--realm", R)
        self.ok("delete realm cascade", "delete", "realm", R, "--cascade")
        p.step("get realms at the end", "get", "realm")
        # Last: the reference writes the child under a missing parent, which would
        # shift every later subnet it allocates.
        self.ok("create realm for missing parents", "create", "realm", R)
        p.step(
            "create stack in a missing space", "create", "stack", K, "--realm", R, "--space", "nope"
        )
        p.step("create space in a missing realm", "create", "space", S, "--realm", "nope")
        p.step("create space in a missing realm: get spaces", "get", "space")
        p.check()

    def test_delete_realm_force(self):
        return threads.deferToThread(self.delete_realm_force)

    def delete_realm_force(self):
        p = self.pair
        self.ok("create realm for force", "create", "realm", R)
        self.ok("create space for force", "create", "space", S, "--realm", R)
        p.step("delete realm force", "delete", "realm", R, "--force")
        p.step("delete realm force: get realms", "get", "realm", "-o", "json")
        p.check()

    def test_images(self):
        return threads.deferToThread(self.images)

    def images(self):
        p = self.pair
        tar = busybox_image().oci_tar
        self.ok("create realm", "create", "realm", R)
        p.step("image get, none yet", "image", "get", "--realm", R)
        p.step("image load into a missing realm", "image", "load", tar, "--realm", "nope")
        self.ok("image load", "image", "load", tar, "--realm", R)
        p.step("image load again", "image", "load", tar, "--realm", R)
        p.step("image get", "image", "get", "--realm", R)
        p.step("image get json", "image", "get", "--realm", R, "-o", "json")
        p.step("image get one json", "image", "get", IMAGE, "--realm", R, "-o", "json")
        p.step("image get one yaml", "image", "get", IMAGE, "--realm", R, "-o", "yaml")
        p.step("image get missing", "image", "get", "docker.io/library/nope:1", "--realm", R)
        p.step("image delete missing", "image", "delete", "docker.io/library/nope:1", "--realm", R)
        self.ok("image delete", "image", "delete", IMAGE, "--realm", R)
        p.step("image get after delete", "image", "get", "--realm", R)
        p.check()
