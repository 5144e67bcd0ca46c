"""Error kinds, wrap chains and the mapping to the wire APIError."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kukeond import errors
from kukeond.api import kukeonv1
from kukeond.api.kukeonv1 import to_api_error
from kukeond.base import gojson


class SentinelTests(SynchronousTestCase):
    def test_twenty_registered_kinds(self) -> None:
        self.assertEqual(len(errors.SENTINELS), 20)
        self.assertEqual(set(errors.SENTINELS), set(errors.KIND_PRIORITY))

    def test_bare_sentinel(self) -> None:
        err = errors.RealmNameRequired()
        self.assertEqual(str(err), "realm name is required")
        self.assertEqual(err.kind, "RealmNameRequired")

    def test_sentinel_with_detail_and_wrap(self) -> None:
        err = errors.ResourceHasDependencies(
            'realm "demo" has 1 space(s). Use --cascade to delete them or --force to skip'
            " validation"
        ).wrap("failed to delete realm")
        self.assertEqual(
            str(err),
            'failed to delete realm: resource has child resources: realm "demo" has 1 space(s).'
            " Use --cascade to delete them or --force to skip validation",
        )
        self.assertEqual(err.kind, "ResourceHasDependencies")
        self.assertIsInstance(err, errors.ResourceHasDependencies)

    def test_after(self) -> None:
        err = errors.SpaceNotFound.after('space "s" not found at run-path "/opt/kukeon"')
        self.assertEqual(str(err), 'space "s" not found at run-path "/opt/kukeon": space not found')
        self.assertEqual(err.kind, "SpaceNotFound")

    def test_around_merges_kinds_and_priority_decides(self) -> None:
        inner = errors.ConversionFailed("unsupported apiVersion for Cell: v2")
        err = errors.CreateCell.around(inner)
        self.assertEqual(
            str(err),
            "failed to create cell: conversion failed: unsupported apiVersion for Cell: v2",
        )
        self.assertEqual(err.kinds, frozenset({"CreateCell", "ConversionFailed"}))
        self.assertEqual(err.kind, "ConversionFailed")
        self.assertTrue(err.is_kind(errors.CreateCell))
        nested = errors.CreateCell.around(errors.CellNotFound.after('cell "x" not found'))
        self.assertEqual(nested.kind, "CellNotFound")

    def test_around_foreign_exception(self) -> None:
        err = errors.CreateRealm.around(OSError("permission denied"))
        self.assertEqual(str(err), "failed to create realm: permission denied")
        self.assertEqual(err.kind, "CreateRealm")

    def test_unknown(self) -> None:
        err = errors.KukeonError('realm "x" not found')
        self.assertEqual(err.kind, "Unknown")
        self.assertEqual(errors.wrap(err, "outer").kind, "Unknown")
        self.assertEqual(str(errors.wrap(ValueError("v"), "outer")), "outer: v")


class ApiErrorTests(SynchronousTestCase):
    def test_to_api_error(self) -> None:
        api = to_api_error(errors.ImageNotFound("docker.io/library/nope:latest"))
        self.assertEqual(
            gojson.dumps(api.to_wire()),
            '{"Kind":"ImageNotFound","Message":"image not found: docker.io/library/nope:latest"}',
        )
        api = to_api_error(RuntimeError())
        self.assertEqual((api.Kind, api.Message), ("Unknown", "RuntimeError"))

    def test_reply_failure_is_zero_reply_with_err(self) -> None:
        _, reply_cls = kukeonv1.METHODS["CreateRealm"]
        reply = reply_cls.failure(errors.RealmNameRequired())
        wire = reply.to_wire()
        self.assertEqual(
            wire["Err"], {"Kind": "RealmNameRequired", "Message": "realm name is required"}
        )
        self.assertEqual(wire["Result"], reply_cls().to_wire()["Result"])


class MethodTableTests(SynchronousTestCase):
    def test_forty_methods(self) -> None:
        self.assertEqual(len(kukeonv1.METHODS), 40)
        for name, (args_cls, reply_cls) in kukeonv1.METHODS.items():
            self.assertEqual(args_cls.go_name, f"kukeonv1.{name}Args")
            self.assertEqual(reply_cls.go_name, f"kukeonv1.{name}Reply")
            self.assertEqual(list(reply_cls().to_wire())[-1], "Err")

    def test_args_shapes(self) -> None:
        shapes = {
            name: list(args_cls().to_wire()) for name, (args_cls, _) in kukeonv1.METHODS.items()
        }
        self.assertEqual(shapes["DeleteRealm"], ["Doc", "Force", "Cascade"])
        self.assertEqual(shapes["DeleteCell"], ["Doc"])
        self.assertEqual(shapes["PurgeCell"], ["Doc", "Force", "Cascade"])
        self.assertEqual(shapes["PurgeContainer"], ["Doc"])
        self.assertEqual(
            shapes["ListContainers"], ["RealmName", "SpaceName", "StackName", "CellName"]
        )
        self.assertEqual(shapes["Ping"], [])
        self.assertEqual(shapes["RefreshAll"], [])
        self.assertEqual(shapes["LoadImage"], ["Realm", "Tarball"])

    def test_ping_reply(self) -> None:
        reply = kukeonv1.PingReply(OK=True, Version="v0.5.0")
        self.assertEqual(gojson.dumps(reply.to_wire()), '{"OK":true,"Version":"v0.5.0","Err":null}')
