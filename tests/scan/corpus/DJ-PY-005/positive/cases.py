# ruff: noqa

"""XML external entities: parsers that resolve entities, fed with data."""
import xml.dom.minidom
import xml.sax
from xml.dom import pulldom
from xml.etree import ElementTree as ET

from lxml import etree


def handler(event, context):
    root = ET.fromstring(event["body"])  # expect: DJ-PY-005@high
    doc = xml.dom.minidom.parseString(event["body"])  # expect: DJ-PY-005@high
    events = pulldom.parseString(event["feed"])  # expect: DJ-PY-005@high
    tree = etree.fromstring(event["svg"])  # expect: DJ-PY-005@high
    return {"tag": root.tag, "doc": doc, "events": events, "tree": tree}


def read_feed(path):
    parser = xml.sax.make_parser()  # expect: DJ-PY-005@medium
    parser.setFeature(xml.sax.handler.feature_external_ges, True)  # expect: DJ-PY-005@high
    parser.parse(path)
    return ET.parse(path)  # expect: DJ-PY-005@medium
