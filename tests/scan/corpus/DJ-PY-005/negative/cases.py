# ruff: noqa

"""Not XXE: defusedxml, a hardened lxml parser, a constant document."""
import defusedxml.ElementTree as DET
from defusedxml import minidom
from lxml import etree


def handler(event, context):
    root = DET.fromstring(event["body"])
    doc = minidom.parseString(event["body"])
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    tree = etree.fromstring(event["svg"], parser=parser)
    from xml.etree import ElementTree as ET

    fixed = ET.fromstring("<config><debug>false</debug></config>")
    return {"tag": root.tag, "doc": doc, "tree": tree, "fixed": fixed}
