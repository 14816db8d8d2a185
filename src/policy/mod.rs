//! `policy` decides who may reach which path of the app: ordered
//! `[[policy]]` rules, first match wins, default "authenticated". Rules
//! match a *normalized* path, and the gateway forwards that same path, so
//! the app never sees a path the policy did not judge (no `..`, `%2e`,
//! `//` or `;param` tricks). It knows nothing about sessions or HTTP
//! framing: it takes a method, a path and an optional principal.

use crate::config::PolicyRuleConfig;
use crate::identity::Principal;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("path must start with '/': {0:?}")]
    PathNotAbsolute(String),
    #[error("'**' is only allowed as the last segment: {0:?}")]
    DoubleStarInside(String),
    #[error("set exactly one of `allow` or `groups`")]
    AccessAmbiguous,
    #[error("allow must be \"public\", \"authenticated\" or \"deny\", not {0:?}")]
    UnknownAllow(String),
    #[error("groups must not be empty")]
    EmptyGroups,
    #[error("tenant only qualifies a groups rule")]
    TenantWithoutGroups,
    #[error("invalid HTTP method {0:?}")]
    BadMethod(String),
}

/// Why a request path is refused before any rule is consulted (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEncoding,
    #[error("encoded '/', '\\' or control character in path")]
    EncodedSeparator,
    #[error("backslash in path")]
    Backslash,
    #[error("path climbs above the root")]
    AboveRoot,
}

/// A request path after normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// What the rules match: dot segments resolved, `//` collapsed, `;params` removed.
    pub matched: String,
    /// What is forwarded: the same, but `;params` (e.g. `;jsessionid=`) kept.
    pub forward: String,
}

/// Normalizes a request path (without query).
pub fn normalize_path(raw: &str) -> Result<NormalizedPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
    if decoded.contains('\\') {
        return Err(PathError::Backslash);
    }
    let trailing = decoded.len() > 1 && decoded.ends_with('/');
    let mut matched: Vec<&str> = Vec::new();
    let mut forward: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let name = seg.split(';').next().unwrap_or("");
        match name {
            "" if seg.is_empty() => continue,
            "." => continue,
            ".." => {
                if matched.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                forward.pop();
            }
            _ => {
                matched.push(name);
                forward.push(seg);
            }
        }
    }
    let join = |segs: &[&str]| {
        let mut s = String::with_capacity(raw.len());
        for seg in segs {
            s.push('/');
            s.push_str(seg);
        }
        if s.is_empty() || (trailing && !segs.is_empty()) {
            s.push('/');
        }
        s
    };
    Ok(NormalizedPath {
        matched: join(&matched),
        forward: join(&forward),
    })
}

/// Decodes `%XX` of unreserved characters, upper-cases the rest, refuses
/// encoded separators and controls.
fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    if !raw.contains('%') {
        return Ok(raw.to_string());
    }
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
            let s = std::str::from_utf8(hex).map_err(|_| PathError::BadEncoding)?;
            let v = u8::from_str_radix(s, 16).map_err(|_| PathError::BadEncoding)?;
            // `;` too: frameworks that decode before stripping `;params` would see another path.
            if v == b'/' || v == b'\\' || v == b';' || v < 0x20 || v == 0x7f {
                return Err(PathError::EncodedSeparator);
            }
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else {
                out.push('%');
                out.push_str(&s.to_ascii_uppercase());
            }
            i += 3;
        } else {
            let ch = raw[i..].chars().next().ok_or(PathError::BadEncoding)?;
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    Ok(out)
}

/// What a rule grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Public,
    Authenticated,
    Groups(Vec<String>),
    /// Members of one of the groups *within* the tenant.
    TenantGroups {
        tenant: String,
        groups: Vec<String>,
    },
    Deny,
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No (valid) session and the path needs one.
    NeedLogin,
    /// Signed in, but not allowed here.
    Forbidden,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// A segment glob such as `*` or `*.css`.
    Glob(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    segments: Vec<Segment>,
    subtree: bool,
    methods: Vec<http::Method>,
    pub access: Access,
    pub source: String,
}

impl Rule {
    pub fn compile(cfg: &PolicyRuleConfig) -> Result<Self, PolicyError> {
        let path = cfg.path.trim();
        if !path.starts_with('/') {
            return Err(PolicyError::PathNotAbsolute(path.to_string()));
        }
        let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let subtree = matches!(parts.last(), Some(&"*") | Some(&"**"));
        if subtree {
            parts.pop();
        }
        if parts.contains(&"**") {
            return Err(PolicyError::DoubleStarInside(path.to_string()));
        }
        let segments = parts
            .into_iter()
            .map(|p| {
                if p.contains('*') {
                    Segment::Glob(p.to_string())
                } else {
                    Segment::Literal(p.to_string())
                }
            })
            .collect();
        let methods = cfg
            .methods
            .iter()
            .map(|m| {
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| PolicyError::BadMethod(m.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cfg.tenant.is_some() && cfg.groups.is_none() {
            return Err(PolicyError::TenantWithoutGroups);
        }
        let access = match (&cfg.allow, &cfg.groups) {
            (Some(_), Some(_)) | (None, None) => return Err(PolicyError::AccessAmbiguous),
            (Some(a), None) => match a.as_str() {
                "public" => Access::Public,
                "authenticated" => Access::Authenticated,
                "deny" => Access::Deny,
                other => return Err(PolicyError::UnknownAllow(other.to_string())),
            },
            (None, Some(g)) if g.is_empty() => return Err(PolicyError::EmptyGroups),
            (None, Some(g)) => match &cfg.tenant {
                Some(t) => Access::TenantGroups {
                    tenant: t.clone(),
                    groups: g.clone(),
                },
                None => Access::Groups(g.clone()),
            },
        };
        Ok(Self {
            segments,
            subtree,
            methods,
            access,
            source: path.to_string(),
        })
    }

    fn matches(&self, method: &http::Method, path: &str) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        let mut segs = path.split('/').filter(|s| !s.is_empty());
        for pat in &self.segments {
            let Some(seg) = segs.next() else { return false };
            let ok = match pat {
                Segment::Literal(l) => l == seg,
                Segment::Glob(g) => glob_match(g, seg),
            };
            if !ok {
                return false;
            }
        }
        self.subtree || segs.next().is_none()
    }
}

/// `*` matches any run of characters within one segment.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The compiled `[[policy]]` list.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Compare paths case-insensitively (apps on IIS/ASP.NET serve `/ADMIN`
    /// as `/admin`, so a case-sensitive rule could be sidestepped).
    case_insensitive: bool,
}

static DEFAULT_ACCESS: Access = Access::Authenticated;

impl Policy {
    pub fn compile(cfgs: &[PolicyRuleConfig]) -> Result<Self, PolicyError> {
        Ok(Self {
            rules: cfgs.iter().map(Rule::compile).collect::<Result<_, _>>()?,
            case_insensitive: false,
        })
    }

    /// Like [`Policy::compile`], matching paths case-insensitively.
    pub fn compile_case_insensitive(cfgs: &[PolicyRuleConfig]) -> Result<Self, PolicyError> {
        let lowered: Vec<PolicyRuleConfig> = cfgs
            .iter()
            .map(|c| PolicyRuleConfig {
                path: c.path.to_lowercase(),
                ..c.clone()
            })
            .collect();
        Ok(Self {
            case_insensitive: true,
            ..Self::compile(&lowered)?
        })
    }

    /// The access rule for a normalized path.
    pub fn access(&self, method: &http::Method, matched_path: &str) -> &Access {
        let lowered;
        let path = if self.case_insensitive {
            lowered = matched_path.to_lowercase();
            lowered.as_str()
        } else {
            matched_path
        };
        self.rules
            .iter()
            .find(|r| r.matches(method, path))
            .map(|r| &r.access)
            .unwrap_or(&DEFAULT_ACCESS)
    }

    pub fn decide(access: &Access, principal: Option<&Principal>) -> Decision {
        match (access, principal) {
            (Access::Public, _) => Decision::Allow,
            (Access::Deny, _) => Decision::Forbidden,
            (_, None) => Decision::NeedLogin,
            (Access::Authenticated, Some(_)) => Decision::Allow,
            (Access::Groups(g), Some(p)) if p.in_any_group(g) => Decision::Allow,
            (Access::Groups(_), Some(_)) => Decision::Forbidden,
            (Access::TenantGroups { tenant, groups }, Some(p))
                if p.tenant.as_deref() == Some(tenant.as_str()) && p.in_any_group(groups) =>
            {
                Decision::Allow
            }
            (Access::TenantGroups { .. }, Some(_)) => Decision::Forbidden,
        }
    }
}

/// `[[policy]]`: every rule compiles.
pub fn validate_config(cfg: &crate::config::Config, p: &mut Vec<crate::config::Problem>) {
    for (i, rule) in cfg.policy.iter().enumerate() {
        if let Err(e) = Rule::compile(rule) {
            p.push(crate::config::Problem::new(
                format!("policy[{i}]"),
                e.to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, allow: Option<&str>, groups: Option<&[&str]>) -> PolicyRuleConfig {
        PolicyRuleConfig {
            path: path.into(),
            methods: vec![],
            allow: allow.map(Into::into),
            groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
            tenant: None,
        }
    }

    fn policy() -> Policy {
        Policy::compile(&[
            rule("/public/*", Some("public"), None),
            rule("/admin/*", None, Some(&["admins"])),
            rule("/assets/*.css", Some("public"), None),
            rule("/health", Some("public"), None),
            rule("/blocked/*", Some("deny"), None),
        ])
        .unwrap()
    }

    fn access_of(p: &Policy, raw: &str) -> Result<Access, PathError> {
        let n = normalize_path(raw)?;
        Ok(p.access(&http::Method::GET, &n.matched).clone())
    }

    #[test]
    fn first_matching_rule_wins_default_is_authenticated() {
        let p = policy();
        assert_eq!(access_of(&p, "/public/a/b").unwrap(), Access::Public);
        assert_eq!(access_of(&p, "/public").unwrap(), Access::Public);
        assert_eq!(access_of(&p, "/publicity").unwrap(), Access::Authenticated);
        assert_eq!(access_of(&p, "/health").unwrap(), Access::Public);
        assert_eq!(access_of(&p, "/health/x").unwrap(), Access::Authenticated);
        assert_eq!(access_of(&p, "/assets/site.css").unwrap(), Access::Public);
        assert_eq!(
            access_of(&p, "/assets/site.js").unwrap(),
            Access::Authenticated
        );
        assert_eq!(access_of(&p, "/").unwrap(), Access::Authenticated);
    }

    #[test]
    fn dot_segment_tricks_are_judged_on_the_real_target() {
        let p = policy();
        let admin = Access::Groups(vec!["admins".into()]);
        for raw in [
            "/public/../admin/users",
            "/public/%2e%2e/admin/users",
            "/public/%2E%2E/admin/users",
            "/public/.%2e/admin/users",
            "//admin/users",
            "/public/..;/admin/users",
            "/./admin/users",
            "/admin;x=1/users",
            "/public/./../admin/users",
        ] {
            assert_eq!(access_of(&p, raw).unwrap(), admin, "{raw}");
        }
    }

    #[test]
    fn refuses_paths_that_cannot_be_judged() {
        assert_eq!(
            normalize_path("/a/%2fadmin"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            normalize_path("/a/%5cadmin"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(normalize_path("/a/%00"), Err(PathError::EncodedSeparator));
        assert_eq!(
            normalize_path("/admin%3Bx/users"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(normalize_path("/a\\..\\admin"), Err(PathError::Backslash));
        assert_eq!(normalize_path("/../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(normalize_path("/a/%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("/a/%4"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path("admin"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn forwarded_path_keeps_params_and_encodings() {
        let n = normalize_path("/app;jsessionid=abc/x/../page%20one/").unwrap();
        assert_eq!(n.forward, "/app;jsessionid=abc/page%20one/");
        assert_eq!(n.matched, "/app/page%20one/");
        assert_eq!(normalize_path("/").unwrap().forward, "/");
        assert_eq!(normalize_path("/a/..").unwrap().forward, "/");
        assert_eq!(normalize_path("/%7euser").unwrap().forward, "/~user");
    }

    #[test]
    fn group_rule_forbids_signed_in_users_without_the_group() {
        let p = policy();
        let access = access_of(&p, "/admin/x").unwrap();
        let bob = Principal {
            sub: "bob".into(),
            groups: vec!["staff".into()],
            ..Default::default()
        };
        let ann = Principal {
            sub: "ann".into(),
            groups: vec!["admins".into()],
            ..Default::default()
        };
        assert_eq!(Policy::decide(&access, None), Decision::NeedLogin);
        assert_eq!(Policy::decide(&access, Some(&bob)), Decision::Forbidden);
        assert_eq!(Policy::decide(&access, Some(&ann)), Decision::Allow);
        assert_eq!(
            Policy::decide(&Access::Deny, Some(&ann)),
            Decision::Forbidden
        );
    }

    #[test]
    fn tenant_qualified_group_rules_ignore_same_named_groups_elsewhere() {
        let mut r = rule("/admin/*", None, Some(&["admins"]));
        r.tenant = Some("acme".into());
        let p = Policy::compile(&[r]).unwrap();
        let access = p.access(&http::Method::GET, "/admin/x").clone();
        let member = |tenant: &str| Principal {
            sub: "u".into(),
            groups: vec!["admins".into()],
            tenant: Some(tenant.into()),
            ..Default::default()
        };
        assert_eq!(
            Policy::decide(&access, Some(&member("acme"))),
            Decision::Allow
        );
        assert_eq!(
            Policy::decide(&access, Some(&member("globex"))),
            Decision::Forbidden
        );
        assert_eq!(Policy::decide(&access, None), Decision::NeedLogin);
        let mut bad = rule("/x", Some("public"), None);
        bad.tenant = Some("acme".into());
        assert_eq!(
            Rule::compile(&bad).unwrap_err(),
            PolicyError::TenantWithoutGroups
        );
    }

    #[test]
    fn case_insensitive_mode_matches_any_spelling() {
        let rules = [rule("/Admin/*", None, Some(&["admins"]))];
        let strict = Policy::compile(&rules).unwrap();
        let ci = Policy::compile_case_insensitive(&rules).unwrap();
        let admin = Access::Groups(vec!["admins".into()]);
        assert_eq!(
            strict.access(&http::Method::GET, "/ADMIN/x"),
            &Access::Authenticated
        );
        for p in ["/ADMIN/x", "/admin/x", "/aDmIn"] {
            assert_eq!(ci.access(&http::Method::GET, p), &admin, "{p}");
        }
    }

    #[test]
    fn methods_narrow_a_rule() {
        let mut r = rule("/api/*", Some("public"), None);
        r.methods = vec!["get".into()];
        let p = Policy::compile(&[r]).unwrap();
        assert_eq!(p.access(&http::Method::GET, "/api/x"), &Access::Public);
        assert_eq!(
            p.access(&http::Method::POST, "/api/x"),
            &Access::Authenticated
        );
    }

    #[test]
    fn refuses_ambiguous_or_malformed_rules() {
        assert_eq!(
            Rule::compile(&rule("/a", Some("public"), Some(&["x"]))).unwrap_err(),
            PolicyError::AccessAmbiguous
        );
        assert_eq!(
            Rule::compile(&rule("/a", None, None)).unwrap_err(),
            PolicyError::AccessAmbiguous
        );
        assert!(matches!(
            Rule::compile(&rule("/a", Some("everyone"), None)),
            Err(PolicyError::UnknownAllow(_))
        ));
        assert!(Rule::compile(&rule("/a/**/b", Some("public"), None)).is_err());
        assert!(Rule::compile(&rule("/a", None, Some(&[]))).is_err());
    }
}
