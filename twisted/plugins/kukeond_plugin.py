"""twistd plugin: ``twistd -n --pidfile= kukeond serve ...``."""

from twisted.application.service import ServiceMaker

kukeond = ServiceMaker(
    "kukeond", "kukeond.tap", "The kukeon container runtime daemon.", "kukeond"
)
