"""Packaging for kukeond."""

from setuptools import find_packages, setup

setup(
    name="kukeond",
    version="0.5.0",
    description="kukeond: the kukeon container runtime daemon, in Python on Twisted",
    python_requires=">=3.11",
    # twisted/plugins/kukeond_plugin.py ships as a module of Twisted's own
    # twisted.plugins package (hence no __init__.py there nor in twisted/), so a
    # normal install puts it beside Twisted's plugins. Twisted finds plugins only by
    # scanning sys.path for twisted/plugins directories, which setuptools' default
    # editable import hook does not extend; declaring the packages at the project
    # root makes the editable install a plain .pth line naming the checkout instead
    # (tests/daemon/test_plugin_install.py).
    package_dir={"": "."},
    packages=find_packages(include=["kukeond", "kukeond.*"]) + ["twisted.plugins"],
    include_package_data=True,
    # A plugin cache written in the checkout must never be shipped: it would replace
    # Twisted's own cache and be deleted with kukeond on uninstall.
    exclude_package_data={"twisted.plugins": ["dropin.cache"]},
    install_requires=[
        "twisted[tls]>=23.8",
        "grpcio>=1.60,<2",
        "protobuf>=7.35.1,<8",
        "pyyaml>=6.0",
        "zope.interface>=6.0",
    ],
    extras_require={
        "dev": [
            "grpcio-tools==1.85.1",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "mypy-zope==1.0.17",
            "types-PyYAML",
            "grpc-stubs==1.53.0.6",
        ]
    },
    entry_points={"console_scripts": ["kukeond = kukeond.cli:main"]},
)
