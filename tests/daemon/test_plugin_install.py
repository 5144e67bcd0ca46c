"""``twistd kukeond`` is found from an editable and from a normal install, from any directory.

Twisted finds plugins by scanning every ``twisted/plugins`` directory on ``sys.path``; an
install that leaves the plugin module anywhere else answers ``Unknown command: kukeond``.
Every twistd here runs from an unrelated directory and without ``PYTHONPATH``, so neither
can put the checkout on ``sys.path`` by accident.

The fresh installs are built from a copy of the project with the running environment's
setuptools and installed with its pip, offline; their dependencies (Twisted included) are
the running environment's, reached through a ``.pth`` line added after the install.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap

from twisted.trial.unittest import SkipTest, TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What building the project reads; tests, benches and local state stay behind.
PROJECT_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md")
PROJECT_DIRS = ("kukeond", "twisted")
LISTED = re.compile(r"^\s+kukeond\s+The kukeon container runtime daemon\.", re.MULTILINE)
TIMEOUT = 120


def clean_env():
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH"):
        env.pop(name, None)
    return env


def write_junk_cache(src):
    with open(os.path.join(src, "twisted", "plugins", "dropin.cache"), "wb") as f:
        f.write(b"not a pickle\n")


class PluginInstallMixin:
    def setUp(self):
        self.tmp = os.path.abspath(self.mktemp())
        self.elsewhere = os.path.join(self.tmp, "elsewhere")
        os.makedirs(self.elsewhere)

    def call(self, argv, **kw):
        kw.setdefault("env", clean_env())
        kw.setdefault("cwd", self.elsewhere)
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, **kw)

    def run_checked(self, argv, **kw):
        proc = self.call(argv, **kw)
        self.assertEqual(
            proc.returncode, 0, f"{argv} failed:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        return proc

    def assert_twistd_serves_kukeond(self, twistd):
        """``twistd --help`` lists kukeond and ``twistd ... kukeond serve --help`` works."""
        listing = self.call([twistd, "--help"])
        self.assertEqual(listing.returncode, 0, listing.stderr)
        commands = listing.stdout.partition("Commands:")[2]
        self.assertRegex(commands, LISTED, "twistd does not list the kukeond plugin")
        serve = self.call([twistd, "-n", "--pidfile=", "kukeond", "serve", "--help"])
        self.assertEqual(serve.returncode, 0, serve.stdout + serve.stderr)
        self.assertIn("--containerd-socket", serve.stdout)
        self.assertIn("Run the kukeond daemon in the foreground", serve.stdout)

    # -- building a fresh environment ---------------------------------------------------

    def copy_project(self):
        src = os.path.join(self.tmp, "project")
        os.makedirs(src)
        for name in PROJECT_FILES:
            if os.path.exists(os.path.join(ROOT, name)):
                shutil.copy2(os.path.join(ROOT, name), src)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache", "*.egg-info")
        for name in PROJECT_DIRS:
            shutil.copytree(os.path.join(ROOT, name), os.path.join(src, name), ignore=ignore)
        return src

    def build(self, src, hook):
        """A wheel built from src by setuptools' PEP 517 ``hook``, as pip does unisolated."""
        try:
            import setuptools.build_meta  # noqa: F401
        except ImportError:
            raise SkipTest("setuptools is not installed in the running environment") from None
        out = os.path.join(self.tmp, "wheels")
        os.makedirs(out, exist_ok=True)
        code = (
            "import sys\n"
            "from setuptools.build_meta import __legacy__ as backend\n"
            f"print(backend.{hook}(sys.argv[1]))\n"
        )
        proc = self.run_checked([sys.executable, "-c", code, out], cwd=src)
        return os.path.join(out, proc.stdout.strip().splitlines()[-1])

    def make_venv(self, name):
        venv = os.path.join(self.tmp, name)
        self.run_checked([sys.executable, "-m", "venv", "--without-pip", venv])
        python = os.path.join(venv, "bin", "python")
        purelib = self.run_checked(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
        ).stdout.strip()
        return python, purelib

    def pip_install(self, python, wheel):
        pip = [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"]
        self.run_checked([*pip, "install", "--no-deps", "--no-index", wheel])

    def borrow_dependencies(self, purelib):
        """Let the fresh venv import the running environment's packages (after theirs)."""
        ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
        with open(os.path.join(purelib, "zz-kukeond-test-dependencies.pth"), "w") as f:
            f.write("".join(f"{path}\n" for path in sorted(ours)))

    def twistd_script(self, python):
        """The console script Twisted's own install would have put in the venv."""
        twistd = os.path.join(os.path.dirname(python), "twistd")
        with open(twistd, "w") as f:
            f.write(
                textwrap.dedent(
                    f"""\
                    #!{python}
                    import sys
                    from twisted.scripts.twistd import run
                    sys.exit(run())
                    """
                )
            )
        os.chmod(twistd, 0o755)
        return twistd


class RunningEnvironmentTests(PluginInstallMixin, TestCase):
    """The environment the suite runs in (``make install``: an editable install)."""

    def test_twistd_finds_kukeond_from_anywhere(self):
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.assertTrue(os.path.exists(twistd), f"no twistd beside {sys.executable}")
        self.assert_twistd_serves_kukeond(twistd)


class EditableInstallTests(PluginInstallMixin, TestCase):
    """``pip install -e .`` of the project into a fresh venv."""

    def test_twistd_finds_kukeond_from_anywhere(self):
        src = self.copy_project()
        # A cache left in the checkout that Twisted cannot read is rebuilt, not trusted.
        write_junk_cache(src)
        wheel = self.build(src, "build_editable")
        python, purelib = self.make_venv("editable")
        self.pip_install(python, wheel)
        self.borrow_dependencies(purelib)
        self.assert_twistd_serves_kukeond(self.twistd_script(python))
        # The plugin module is the checkout's own file, so edits to it take effect.
        where = self.run_checked(
            [python, "-c", "import twisted.plugins.kukeond_plugin as p; print(p.__file__)"]
        ).stdout.strip()
        self.assertEqual(
            os.path.realpath(where),
            os.path.realpath(os.path.join(src, "twisted", "plugins", "kukeond_plugin.py")),
        )


class NormalInstallTests(PluginInstallMixin, TestCase):
    """``pip install .`` into a fresh venv that has its own copy of Twisted."""

    def setUp(self):
        super().setUp()
        src = self.copy_project()
        # Once twistd has run in a checkout there is a cache there: it must not ship.
        write_junk_cache(src)
        wheel = self.build(src, "build_wheel")
        self.python, self.purelib = self.make_venv("installed")
        # The plugin must land in Twisted's own twisted/plugins, beside Twisted's
        # plugin cache, which predates kukeond: give the venv its own Twisted.
        import twisted

        shutil.copytree(
            os.path.dirname(twisted.__file__),
            os.path.join(self.purelib, "twisted"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        self.plugins = os.path.join(self.purelib, "twisted", "plugins")
        with open(os.path.join(self.plugins, "__init__.py")) as f:
            self.twisted_init = f.read()
        self.pip_install(self.python, wheel)
        self.borrow_dependencies(self.purelib)
        self.twistd = self.twistd_script(self.python)

    def installed_files(self):
        (record,) = [
            os.path.join(self.purelib, name, "RECORD")
            for name in os.listdir(self.purelib)
            if name.startswith("kukeond-") and name.endswith(".dist-info")
        ]
        with open(record) as f:
            return {line.split(",")[0] for line in f if "__pycache__" not in line}

    def test_twistd_finds_kukeond_from_anywhere(self):
        installed = os.path.join(self.plugins, "kukeond_plugin.py")
        self.assertTrue(os.path.exists(installed), "the wheel did not install the plugin")
        self.assert_twistd_serves_kukeond(self.twistd)

    def test_only_the_plugin_module_goes_into_twisted_plugins(self):
        """Twisted's package and plugin cache are Twisted's: no __init__.py, no dropin.cache."""
        ours = {path for path in self.installed_files() if path.startswith("twisted/")}
        self.assertEqual(ours, {"twisted/plugins/kukeond_plugin.py"})
        with open(os.path.join(self.plugins, "__init__.py")) as f:
            self.assertEqual(f.read(), self.twisted_init)

    def test_unusable_plugin_cache_does_not_hide_kukeond(self):
        """A cache twistd can neither read nor rewrite (even as root) only costs a rescan."""
        cache = os.path.join(self.plugins, "dropin.cache")
        if os.path.exists(cache):
            os.remove(cache)
        os.mkdir(cache)
        self.assert_twistd_serves_kukeond(self.twistd)
