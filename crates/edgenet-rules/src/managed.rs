//! The managed rule set: rules for common attacks (SQL injection, cross-site scripting, path
//! traversal, command injection, scanners), written in the Rules language itself so that they
//! run through the same compiler and evaluator as a zone's own rules.
//!
//! Each rule has a stable id that a zone can disable. Request-borne rules look at the URI
//! after two rounds of percent-decoding (attackers double-encode to slip past one round);
//! the SQL injection and cross-site scripting rules also read the Referer and Cookie headers.
//! Every pattern is ASCII, case-insensitive (`(?i-u)`): decoded bytes need not be UTF-8, and
//! ASCII classes keep the compiled automata small.
//!
//! The rules were measured on the corpora in `corpus/` (see `corpus/SOURCES.md` and
//! `tests/corpus.rs`): detection and false positives per category.

use std::sync::{Arc, OnceLock};

use crate::expr::Expression;

/// What a managed rule protects against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// SQL injection.
    Sqli,
    /// Cross-site scripting (and template injection).
    Xss,
    /// Path traversal and local file inclusion.
    Traversal,
    /// Operating-system command injection.
    Cmdi,
    /// Known vulnerability scanners by User-Agent.
    Scanner,
}

impl Category {
    /// Its name in ids, metrics and reports.
    pub fn name(self) -> &'static str {
        match self {
            Category::Sqli => "sqli",
            Category::Xss => "xss",
            Category::Traversal => "traversal",
            Category::Cmdi => "cmdi",
            Category::Scanner => "scanner",
        }
    }
}

/// Which parts of a request a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The URI, decoded twice.
    Uri,
    /// The URI decoded twice, and the Referer and Cookie headers decoded once.
    UriAndHeaders,
    /// The User-Agent header.
    UserAgent,
}

/// One managed rule.
#[derive(Debug, Clone, Copy)]
pub struct ManagedRule {
    /// Its id (what a zone lists to disable it).
    pub id: &'static str,
    /// What it protects against.
    pub category: Category,
    /// A line for people.
    pub description: &'static str,
    target: Target,
    pattern: &'static str,
}

impl ManagedRule {
    /// The rule as a Rules-language expression.
    pub fn expression(&self) -> String {
        let m = |field: &str| format!("{field} matches r##\"{}\"##", self.pattern);
        match self.target {
            Target::Uri => m("url_decode(url_decode(http.request.uri))"),
            Target::UriAndHeaders => format!(
                "{} or {} or {}",
                m("url_decode(url_decode(http.request.uri))"),
                m("url_decode(http.referer)"),
                m("url_decode(http.cookie)")
            ),
            Target::UserAgent => m("http.user_agent"),
        }
    }
}

const fn rule(
    id: &'static str,
    category: Category,
    target: Target,
    description: &'static str,
    pattern: &'static str,
) -> ManagedRule {
    ManagedRule {
        id,
        category,
        description,
        target,
        pattern,
    }
}

use Category::*;
use Target::*;

/// The managed rules, in evaluation order.
pub const RULES: &[ManagedRule] = &[
    rule(
        "edgenet-sqli-boolean",
        Sqli,
        UriAndHeaders,
        "A boolean test on literals after AND/OR/HAVING (1 AND 5=5, ' OR 'a'='a)",
        r#"(?i-u)\b(and|or|xor|not|having|where)\b[\s(]+(\d+|'[^']*'|"[^"]*"|[\w.]+\(.*\))\s*(=|<>|!=|<=?|>=?|\blike\b|\brlike\b|\bregexp\b|\bis\b)\s*[\w'"(]"#,
    ),
    rule(
        "edgenet-sqli-quote-boolean",
        Sqli,
        UriAndHeaders,
        "A quote closed and followed by AND/OR and a literal (x' AND '1)",
        r#"(?i-u)['"`]\s*(\)\s*)*(and|or|xor|&&|\|\|)\s*[\s(]*['"\d-]"#,
    ),
    rule(
        "edgenet-sqli-union",
        Sqli,
        UriAndHeaders,
        "UNION [ALL] SELECT",
        r"(?i-u)\bunion\b[\s(]+(all\s+|distinct\s+)?[\s(]*select\b",
    ),
    rule(
        "edgenet-sqli-functions",
        Sqli,
        UriAndHeaders,
        "Calls of SQL functions used for timing, errors and extraction (SLEEP(5), EXTRACTVALUE(...))",
        r"(?i-u)\b(sleep|benchmark|pg_sleep|dbms_pipe\.receive_message|extractvalue|updatexml|utl_inaddr\.get_host_address|ctxsys\.drithsx\.sn|xp_cmdshell|load_file|elt|make_set|bit_shift|randomblob|regexp_substring|json_keys|gtid_subset|exp|floor|rand|convert|cast|char|chr|concat|ascii|substring|substr|mid|ord|version|user|database|count|iif|case|generate_series|dbms_utility\.sqlid_to_sqlhash|sys\.fn_|raiserror)\s*\(\s*[^\s)]",
    ),
    rule(
        "edgenet-sqli-keywords",
        Sqli,
        UriAndHeaders,
        "SQL statements and catalog names (SELECT ... FROM ... WHERE, information_schema, WAITFOR DELAY)",
        r"(?i-u)(\bwaitfor\s+delay\b|\binformation_schema\b|\bsysobjects\b|\bsys\.objects\b|@@version|\binto\s+(out|dump)file\b|\bselect\b.{0,80}\bfrom\b.{0,80}\b(where|limit|union|order|group)\b|\bselect\s+(\*|null|count|case|\d+\s*(,|from|$))|\bcase\s+when\b.{0,80}\bthen\b|\bprocedure\s+analyse\b)",
    ),
    rule(
        "edgenet-sqli-stacked",
        Sqli,
        UriAndHeaders,
        "A second statement after a semicolon (; DROP ..., ; EXEC ...)",
        r"(?i-u);\s*(select|insert|update|delete|drop|create|alter|exec|execute|declare|shutdown|waitfor|call)\b",
    ),
    rule(
        "edgenet-sqli-comment",
        Sqli,
        UriAndHeaders,
        "A quote or parenthesis closed by an SQL comment, or inline comments (admin'--, /**/)",
        r#"(?i-u)(['")]\s*(--|#|/\*)|/\*!?\d*.*?\*/|--\s*-?\s*$)"#,
    ),
    rule(
        "edgenet-xss-script",
        Xss,
        UriAndHeaders,
        "A <script> tag",
        r"(?i-u)<\s*/?\s*script\b",
    ),
    rule(
        "edgenet-xss-handler",
        Xss,
        UriAndHeaders,
        "An event handler attribute (onerror=, onload=)",
        r#"(?i-u)[\s"'/`;]on[a-z]{3,}\s*="#,
    ),
    rule(
        "edgenet-xss-uri",
        Xss,
        UriAndHeaders,
        "Script URIs and style scripting (javascript:, data:text/html, behavior:)",
        r"(?i-u)(javascript|vbscript|livescript)\s*:|data\s*:\s*(text/html|image/svg|application/(x-)?javascript|[\w/+.-]*;base64,)|\bbehavior\s*:|-moz-binding",
    ),
    rule(
        "edgenet-xss-tags",
        Xss,
        UriAndHeaders,
        "Tags that load or run content (<img src=, <svg, <iframe)",
        r"(?i-u)<\s*(iframe|frame|frameset|object|embed|applet|svg|math|img|image|body|style|link|meta|base|form|input|button|details|video|audio|source|marquee|isindex|xml|xss|textarea|select|keygen|table|td|div|a|x|animate|set|template|noscript|title|html|layer|bgsound|webview|portal|dialog)\b[^>]*(=|>|/)",
    ),
    rule(
        "edgenet-xss-js",
        Xss,
        UriAndHeaders,
        "Script calls and DOM sinks (alert(1), document.cookie, expression())",
        r"(?i-u)(\b(alert|prompt|confirm|eval|settimeout|setinterval|fromcharcode|atob)\s*(\(|`)\s*[^\s)]|document\.(cookie|domain|write|location)|window\.location|\bexpression\s*\(|srcdoc\s*=|\{\{.*(constructor|\$on|alert).*\}\})",
    ),
    rule(
        "edgenet-xss-template",
        Xss,
        UriAndHeaders,
        "Template injection ({{7*7}}, ${...}, {% ... %})",
        r"(?-u)(\{\{[^}]*\}\}|\{%[^%]*%\}|\$\{[^}]*\}|\{!!.*!!\})",
    ),
    rule(
        "edgenet-xss-entities",
        Xss,
        UriAndHeaders,
        "Tags spelled with HTML or JavaScript escapes (&#60;script, \\u003cimg)",
        r"(?i-u)(&#0*60;?|&#x0*3c;?|&lt;|\\u003c|\\x3c)\s*/?\s*(script|img|svg|iframe|body|a\b)",
    ),
    rule(
        "edgenet-traversal-dotdot",
        Traversal,
        Uri,
        "Parent-directory steps (../../, /../, ..\\windows)",
        r"(?i-u)(\.{2,}%?[/\\%]+){2}|[/\\]\.\.[/\\]|\.\.[/\\](etc|windows|winnt|boot|proc|usr|var|inetpub|system32)|^\.\.[/\\]",
    ),
    rule(
        "edgenet-traversal-files",
        Traversal,
        Uri,
        "Names of system files (/etc/passwd, win.ini, web.config)",
        r"(?i-u)(etc[/\\]+(passwd|shadow|hosts|group|issue)|win\.ini|boot\.ini|proc[/\\]+self|system32|\.htpasswd|web\.config|global\.asa|desktop\.ini|inetpub[/\\]|c:[/\\]+windows)",
    ),
    rule(
        "edgenet-traversal-encoding",
        Traversal,
        Uri,
        "Overlong UTF-8, %u escapes of dots and slashes, and NUL bytes",
        r"(?-u)(\xc0[\xae\xaf\x2e\x2f\x5c\x80]|\xe0\x80\xae|\xc1[\x1c\x9c]|%[uU](002[eE]|221[56]|[fF][fF]0[eEfF]|[fF][fF]1[cCeE]|003[cCeE])|\x00)",
    ),
    rule(
        "edgenet-cmdi-chain",
        Cmdi,
        UriAndHeaders,
        "A shell command after a command separator (; id, | cat, `ls`, $(whoami))",
        r"(?i-u)([;|&`\n\r(<^]|\\n|\$\()\s*(id|whoami|uname|cat|ls|ping|sleep|wget|curl|nc|ncat|netcat|bash|sh|zsh|python3?|perl|php|ruby|nslookup|dig|ifconfig|ipconfig|netstat|echo|rm|chmod|telnet|ps|powershell|cmd|net)\b",
    ),
    rule(
        "edgenet-cmdi-syntax",
        Cmdi,
        UriAndHeaders,
        "Shell and server-side include syntax ($(...), ${IFS}, <!--#exec, system(), /bin/sh)",
        r"(?i-u)(\$\([^)]*\)|\$\{ifs\}|\bcmd=\$|<!--\s*#\s*exec|\bsystem\s*\(|\b(exec|passthru|shell_exec|popen|proc_open)\s*\(|/bin/(ba|z|da)?sh\b|/usr/bin/\w+|`[^`]*\b(id|whoami|uname|cat|ls|ping|sleep|wget|curl|nc)\b[^`]*`)",
    ),
    rule(
        "edgenet-scanner-ua",
        Scanner,
        UserAgent,
        "User-Agents of vulnerability scanners and brute-forcers (sqlmap, Nikto, Nuclei, ...)",
        r"(?i-u)(sqlmap|nikto|nmap scripting|masscan|zgrab|nuclei|wpscan|dirbuster|gobuster|wfuzz|fuzz faster u fool|acunetix|netsparker|openvas|nessus|w3af|arachni|\(zap\)|qualys|commix|havij|bsqlbf|jdatabasedrivermysqli|jorgee|xenu|dirb/|feroxbuster|nimbostratus|whatweb|wapiti|skipfish)",
    ),
];

/// The managed rule with `id`.
pub fn get(id: &str) -> Option<&'static ManagedRule> {
    RULES.iter().find(|r| r.id == id)
}

/// Every managed rule, compiled once per process and shared by all zones.
pub fn compiled() -> &'static [(ManagedRule, Arc<Expression>)] {
    static COMPILED: OnceLock<Vec<(ManagedRule, Arc<Expression>)>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        RULES
            .iter()
            .map(|r| {
                let e = Expression::compile(&r.expression())
                    .unwrap_or_else(|e| panic!("managed rule {} does not compile: {e}", r.id));
                (*r, Arc::new(e))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Request;
    use std::net::{IpAddr, Ipv4Addr};

    struct Get(&'static str, &'static str);

    impl Request for Get {
        fn method(&self) -> &[u8] {
            b"GET"
        }
        fn uri(&self) -> &[u8] {
            self.0.as_bytes()
        }
        fn path(&self) -> &[u8] {
            self.0.split('?').next().unwrap().as_bytes()
        }
        fn query(&self) -> &[u8] {
            self.0.split_once('?').map_or("", |(_, q)| q).as_bytes()
        }
        fn host(&self) -> &[u8] {
            b"example.com"
        }
        fn version(&self) -> &[u8] {
            b"HTTP/1.1"
        }
        fn ip_src(&self) -> IpAddr {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        fn ssl(&self) -> bool {
            false
        }
        fn header(&self, name: &str, i: usize) -> Option<&[u8]> {
            (name == "user-agent" && i == 0).then_some(self.1.as_bytes())
        }
        fn header_name(&self, i: usize) -> Option<&[u8]> {
            (i == 0).then_some(b"user-agent".as_slice())
        }
    }

    #[test]
    fn each_rule_catches_its_example_and_not_plain_requests() {
        let examples = [
            ("edgenet-sqli-boolean", "/i?id=1%20AND%205%3D5"),
            ("edgenet-sqli-quote-boolean", "/i?id=x%27%20OR%20%271"),
            (
                "edgenet-sqli-union",
                "/i?id=1%20UNION%20ALL%20SELECT%20NULL",
            ),
            ("edgenet-sqli-functions", "/i?id=1%20AND%20SLEEP(5)"),
            (
                "edgenet-sqli-keywords",
                "/i?id=1%20from%20information_schema.tables",
            ),
            ("edgenet-sqli-stacked", "/i?id=1;%20DROP%20TABLE%20users"),
            ("edgenet-sqli-comment", "/login?user=admin%27--"),
            ("edgenet-xss-script", "/s?q=%3Cscript%20src=//x%3E"),
            ("edgenet-xss-handler", "/s?q=%22%20onmouseover%3Dx"),
            ("edgenet-xss-uri", "/r?to=javascript:x"),
            ("edgenet-xss-tags", "/s?q=%3Ciframe%20src%3D//x%3E"),
            ("edgenet-xss-js", "/s?q=x;alert(document.domain)"),
            ("edgenet-xss-template", "/s?q={{7*7}}"),
            ("edgenet-xss-entities", "/s?q=%26lt;script%26gt;"),
            (
                "edgenet-traversal-dotdot",
                "/d?file=..%2F..%2F..%2Fetc%2Fpasswd",
            ),
            ("edgenet-traversal-files", "/d?file=C:%5Cboot.ini"),
            (
                "edgenet-traversal-encoding",
                "/d?file=%25c0%25ae%25c0%25ae/x",
            ),
            ("edgenet-cmdi-chain", "/p?host=1.1.1.1%3Bcat%20x"),
            ("edgenet-cmdi-syntax", "/p?host=$(reboot)"),
        ];
        let catches = |id: &str, r: &Get| {
            let (_, e) = compiled().iter().find(|(m, _)| m.id == id).unwrap();
            e.matches(r)
        };
        for (id, uri) in examples {
            assert!(catches(id, &Get(uri, "curl/8")), "{id} misses {uri}");
        }
        assert!(catches(
            "edgenet-scanner-ua",
            &Get("/", "Mozilla/5.00 (Nikto/2.5.0)")
        ));
        for (rule, _) in compiled() {
            let plain = Get(
                "/products/shoes?size=42&colour=dark%20blue",
                "Mozilla/5.0 Firefox/128.0",
            );
            assert!(!catches(rule.id, &plain), "{} on a plain request", rule.id);
        }
    }

    #[test]
    fn every_rule_compiles_and_ids_are_unique() {
        assert_eq!(compiled().len(), RULES.len());
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        assert!(RULES
            .iter()
            .all(|r| r.id.starts_with(&format!("edgenet-{}-", r.category.name()))));
        assert!(get("edgenet-sqli-union").is_some() && get("nope").is_none());
    }
}
