# ruff: noqa

import ftplib
import telnetlib


def fetch():
    ftp = ftplib.FTP("ftp.internal")  # expect: DJ-PY-106
    tn = telnetlib.Telnet("router.internal")  # expect: DJ-PY-106
    return ftp, tn
