# ruff: noqa

import ftplib


def fetch():
    return ftplib.FTP_TLS("ftp.internal")
