"""Packaging for kukeond."""

from setuptools import find_packages, setup

setup(
    name="kukeond",
    version="0.5.0",
    description="kukeond: the kukeon container runtime daemon, in Python on Twisted",
    python_requires=">=3.11",
    packages=find_packages(include=["kukeond", "kukeond.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/kukeond_plugin.py"]},
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=23.8",
        "txaio>=23.1",
        "grpcio>=1.60,<2",
        "protobuf>=7.35.1,<8",
        "pyyaml>=6.0",
        "zope.interface>=6.0",
    ],
    extras_require={"dev": ["grpcio-tools==1.85.1", "ruff"]},
    entry_points={"console_scripts": ["kukeond = kukeond.cli:main"]},
)
