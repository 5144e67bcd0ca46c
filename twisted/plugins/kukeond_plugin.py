"""twistd plugin: ``twistd -n --pidfile= kukeond serve ...``.

``twisted.plugins`` is Twisted's package: neither this directory nor ``twisted/``
may hold an ``__init__.py``, or they would shadow Twisted's own.
"""

from twisted.application.service import ServiceMaker

kukeond = ServiceMaker("kukeond", "kukeond.tap", "The kukeon container runtime daemon.", "kukeond")
