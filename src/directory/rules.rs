//! The rules every backend applies before it writes: validation, the
//! normalised index keys, id assignment and versioning. Kept here, in plain
//! functions over plain values, so the embedded and Redis backends cannot
//! disagree about what "the same userName" means.

use std::collections::HashSet;

use super::{DirectoryError, DirectoryResult, Group, Meta, User};

/// Longest indexed value accepted (userName, externalId, email, group
/// displayName, member id), in bytes. Far above anything an IdP sends; it
/// keeps index keys bounded.
pub const MAX_VALUE_LEN: usize = 1024;

/// Longest tenant name accepted, in bytes.
pub const MAX_TENANT_LEN: usize = 256;

/// The case-insensitive form of an indexed value (userName, email, group
/// displayName). Unicode lowercase, not full case folding: enough for
/// RFC 7643's `caseExact: false` on the names IdPs send.
///
/// Lowercasing alone would merge identifiers that are not case variants of
/// each other (U+212A KELVIN SIGN lowercases to an ASCII `k`), so userNames
/// and emails only reach it through [`identifier_key`], which refuses them.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Refuses a userName or email that could pass for another identifier:
///
/// - not in Unicode normalization form NFKC: compatibility characters
///   (U+212A KELVIN SIGN, fullwidth letters, ligatures, ...) would fold or
///   normalise onto other letters, so `\u{212A}ate@a.example` could match
///   `kate@a.example`. For a string in NFKC, lowercasing merges only true
///   case variants, so the index key ([`fold`]) is unchanged for every
///   identifier accepted before and stored data still matches.
/// - a control character (U+0000 included) or an invisible formatting
///   character ([`is_invisible`]).
/// - a domain part (after the last `@`) that is not ASCII: domains are
///   compared as ASCII by the IdP routing and ownership rules, so an IDN is
///   written as its IDNA A-label (`xn--...`).
///
/// Checked on every write of a user (both backends, via `new_user` and
/// `replacement_user`) and by every lookup ([`identifier_key`]).
pub fn check_identifier(what: &str, v: &str) -> DirectoryResult<()> {
    // A NUL or other control character would be stored and then match no
    // lookup a client can type (and breaks C consumers of the JWT).
    if v.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(DirectoryError::Invalid(format!(
            "{what} {v:?} contains a control or invisible formatting character"
        )));
    }
    if !icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().is_normalized(v) {
        return Err(DirectoryError::Invalid(format!(
            "{what} {v:?} is not in Unicode normalization form NFKC: it holds compatibility \
             characters (such as U+212A KELVIN SIGN or fullwidth letters) that would pass for \
             other letters; send it in NFKC"
        )));
    }
    if let Some((_, domain)) = v.rsplit_once('@') {
        if !domain.is_ascii() {
            return Err(DirectoryError::Invalid(format!(
                "{what} {v:?} has a non-ASCII domain; write the domain as its IDNA A-label (xn--...)"
            )));
        }
    }
    Ok(())
}

/// Invisible formatting characters (Unicode category Cf that NFKC keeps):
/// zero-width spaces and joiners, bidirectional overrides and isolates
/// (U+202E turns `moc.x@y` into what reads as `y@x.com`), the BOM, the soft
/// hyphen. An identifier holding one reads as another.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

/// The index key of a userName or email given to a lookup, or `None` when
/// [`check_identifier`] refuses it: such a value can match no stored
/// identifier (none is stored), and folding it could hit another one.
pub fn identifier_key(v: &str) -> Option<String> {
    check_identifier("identifier", v).ok().map(|()| fold(v))
}

/// Does the stored identifier `stored` match the lookup value `wanted`?
/// Both must pass [`check_identifier`]: an index entry written before the
/// check existed, for a value it would refuse, matches nothing.
pub fn same_identifier(stored: &str, wanted: &str) -> bool {
    match (identifier_key(stored), identifier_key(wanted)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Does `user` hold `email` (by [`same_identifier`]) among its emails?
pub fn has_email(user: &User, email: &str) -> bool {
    user.emails.iter().any(|e| same_identifier(&e.value, email))
}

/// A new resource id: 122 random bits in UUID v4 form, because SCIM clients
/// store and echo ids and some expect that shape.
/// True for the shape `new_id` produces (lowercase UUID v4).
pub fn is_generated_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
        && b[14] == b'4'
}

pub fn new_id() -> String {
    let mut b = crate::secret::random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub fn check_tenant(tenant: &str) -> DirectoryResult<()> {
    if tenant.is_empty() || tenant.len() > MAX_TENANT_LEN || tenant.chars().any(char::is_control) {
        return Err(DirectoryError::Invalid(
            "tenant must be 1-256 bytes without control characters".into(),
        ));
    }
    Ok(())
}

fn check_len(what: &str, v: &str) -> DirectoryResult<()> {
    if v.len() > MAX_VALUE_LEN {
        return Err(DirectoryError::Invalid(format!(
            "{what} is longer than {MAX_VALUE_LEN} bytes"
        )));
    }
    Ok(())
}

/// An empty externalId means "none": clients send `""` to clear it.
fn normalise_external_id(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// The index entries a user occupies. A tombstone occupies none, which is
/// what frees its userName.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserKeys {
    /// Folded userName.
    pub user_name: Option<String>,
    /// externalId, case-exact.
    pub external_id: Option<String>,
    /// Folded, deduplicated, non-empty emails.
    pub emails: Vec<String>,
}

impl UserKeys {
    pub fn of(u: &User) -> Self {
        if u.deleted {
            return Self::default();
        }
        let mut seen = HashSet::new();
        let emails = u
            .emails
            .iter()
            .filter(|e| !e.value.is_empty())
            .map(|e| fold(&e.value))
            .filter(|e| seen.insert(e.clone()))
            .collect();
        Self {
            user_name: Some(fold(&u.user_name)),
            external_id: u.external_id.clone(),
            emails,
        }
    }
}

/// The index entries a group occupies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupKeys {
    /// Folded displayName.
    pub display_name: String,
    pub external_id: Option<String>,
}

impl GroupKeys {
    pub fn of(g: &Group) -> Self {
        Self {
            display_name: fold(&g.display_name),
            external_id: g.external_id.clone(),
        }
    }
}

fn validate_user(user: &mut User) -> DirectoryResult<()> {
    if user.user_name.trim().is_empty() {
        return Err(DirectoryError::Invalid("userName is required".into()));
    }
    check_len("userName", &user.user_name)?;
    check_identifier("userName", &user.user_name)?;
    user.external_id = normalise_external_id(user.external_id.take());
    if let Some(x) = &user.external_id {
        check_len("externalId", x)?;
    }
    for e in user.emails.iter().filter(|e| !e.value.is_empty()) {
        check_len("email", &e.value)?;
        check_identifier("email", &e.value)?;
    }
    Ok(())
}

/// A user ready to be created: validated, with a fresh id and version 1.
pub fn new_user(tenant: &str, mut user: User, now: u64) -> DirectoryResult<User> {
    check_tenant(tenant)?;
    validate_user(&mut user)?;
    // A caller may reserve the id beforehand (a sync webhook saw it first);
    // anything that is not one of our ids is replaced.
    if !is_generated_id(&user.id) {
        user.id = new_id();
    }
    user.tenant = tenant.to_string();
    user.deleted = false;
    user.meta = Meta {
        created_ms: now,
        last_modified_ms: now,
        version: 1,
    };
    Ok(user)
}

/// Refuses unless `expected` (if any) is the stored version.
pub fn check_version(current: u64, expected: Option<u64>) -> DirectoryResult<()> {
    match expected {
        Some(e) if e != current => Err(DirectoryError::VersionMismatch {
            expected: e,
            current,
        }),
        _ => Ok(()),
    }
}

/// The meta of the next version. `last_modified` never goes backwards, even
/// if the clock does.
pub fn next_meta(current: &Meta, now: u64) -> Meta {
    Meta {
        created_ms: current.created_ms,
        last_modified_ms: now.max(current.last_modified_ms),
        version: current.version + 1,
    }
}

/// `user` as the replacement of `current`: what the store owns (id, tenant,
/// created, the tombstone flag) is kept from `current`.
pub fn replacement_user(
    current: &User,
    mut user: User,
    expected: Option<u64>,
    now: u64,
) -> DirectoryResult<User> {
    if current.deleted {
        return Err(DirectoryError::NotFound { what: "user" });
    }
    check_version(current.meta.version, expected)?;
    validate_user(&mut user)?;
    user.id = current.id.clone();
    user.tenant = current.tenant.clone();
    user.deleted = false;
    user.meta = next_meta(&current.meta, now);
    Ok(user)
}

/// `current` as a tombstone.
pub fn tombstone(current: &User, now: u64) -> DirectoryResult<User> {
    if current.deleted {
        return Err(DirectoryError::NotFound { what: "user" });
    }
    let mut user = current.clone();
    user.deleted = true;
    user.active = false;
    user.meta = next_meta(&current.meta, now);
    Ok(user)
}

/// The user as a `user.deleted` event shows it after a hard delete (no
/// record remains to read): deleted and inactive, otherwise as it was.
pub fn as_deleted(current: &User) -> User {
    User {
        deleted: true,
        active: false,
        ..current.clone()
    }
}

/// Validates a group's own attributes and normalises its externalId.
/// Members are checked by `member_ids` and resolved by the backend.
pub fn validate_group(tenant: &str, group: &mut Group) -> DirectoryResult<()> {
    check_tenant(tenant)?;
    if group.display_name.trim().is_empty() {
        return Err(DirectoryError::Invalid("displayName is required".into()));
    }
    check_len("displayName", &group.display_name)?;
    group.external_id = normalise_external_id(group.external_id.take());
    if let Some(x) = &group.external_id {
        check_len("externalId", x)?;
    }
    group.tenant = tenant.to_string();
    Ok(())
}

/// A group ready to be created (members still unresolved).
pub fn new_group(tenant: &str, mut group: Group, now: u64) -> DirectoryResult<Group> {
    validate_group(tenant, &mut group)?;
    if !is_generated_id(&group.id) {
        group.id = new_id();
    }
    group.meta = Meta {
        created_ms: now,
        last_modified_ms: now,
        version: 1,
    };
    Ok(group)
}

/// Member ids to write to `group_id`: non-empty, bounded, first occurrence
/// kept, and never the group itself.
pub fn member_ids<'a>(
    group_id: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> DirectoryResult<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        if id.is_empty() {
            return Err(DirectoryError::Invalid("member value is empty".into()));
        }
        check_len("member value", id)?;
        if id == group_id {
            return Err(DirectoryError::Invalid(
                "a group cannot be a member of itself".into(),
            ));
        }
        if seen.insert(id) {
            out.push(id.to_string());
        }
    }
    Ok(out)
}

/// Member ids to remove: first occurrence kept, empty ids ignored (they
/// cannot be members, and removing a non-member succeeds anyway).
pub fn removal_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.into_iter()
        .filter(|id| !id.is_empty() && seen.insert(*id))
        .map(str::to_string)
        .collect()
}

/// The error for a member id that is neither a live user nor a group.
pub fn unknown_member(id: &str) -> DirectoryError {
    DirectoryError::Invalid(format!(
        "member {id:?} is not a user or group of this tenant"
    ))
}

/// Listing order: (created, id), stable across pages.
pub fn sort_users(users: &mut [User]) {
    users.sort_by(|a, b| {
        (a.meta.created_ms, a.id.as_str()).cmp(&(b.meta.created_ms, b.id.as_str()))
    });
}

/// Listing order for groups: (created, id).
pub fn sort_groups(groups: &mut [Group]) {
    groups.sort_by(|a, b| {
        (a.meta.created_ms, a.id.as_str()).cmp(&(b.meta.created_ms, b.id.as_str()))
    });
}

/// Order of `groups_of_user`: by folded displayName, then id.
pub fn sort_group_refs(refs: &mut [super::GroupRef]) {
    refs.sort_by_cached_key(|r| (fold(&r.display_name), r.id.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v4_shaped_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, new_id());
    }

    #[test]
    fn tombstones_occupy_no_index() {
        let mut u = User::new("Alice@Example.com");
        u.emails.push(super::super::MultiValue {
            value: "Alice@Example.com".into(),
            ..Default::default()
        });
        let keys = UserKeys::of(&u);
        assert_eq!(keys.user_name.as_deref(), Some("alice@example.com"));
        assert_eq!(keys.emails, vec!["alice@example.com".to_string()]);
        u.deleted = true;
        assert_eq!(UserKeys::of(&u), UserKeys::default());
    }

    #[test]
    fn lookalike_identifiers_are_refused_and_match_nothing() {
        for bad in [
            "\u{212A}ate@a.example",
            "\u{FF4B}ate@a.example",
            "\u{FB01}@a.example",
            "kate@b\u{FC}cher.example",
            "kate@a.\u{212A}.example",
        ] {
            assert!(check_identifier("userName", bad).is_err(), "{bad}");
            assert_eq!(identifier_key(bad), None, "{bad}");
            assert!(!same_identifier("kate@a.example", bad), "{bad}");
            assert!(!same_identifier(bad, "kate@a.example"), "{bad}");
        }
        // Normalised non-ASCII local parts, opaque ids and A-labels are fine,
        // and keep their old (lowercase) index key.
        for ok in [
            "Jos\u{E9}@a.example",
            "00u1abcd",
            "kate@xn--bcher-kva.example",
        ] {
            assert_eq!(identifier_key(ok), Some(fold(ok)), "{ok}");
        }
        assert!(same_identifier(
            "Jos\u{E9}@A.example",
            "JOS\u{C9}@a.EXAMPLE"
        ));
        // Decomposed input is not NFKC either: refused, not silently merged.
        assert_eq!(identifier_key("Jose\u{301}@a.example"), None);
    }

    #[test]
    fn empty_external_id_means_none() {
        let u = User {
            external_id: Some(String::new()),
            ..User::new("bob")
        };
        assert_eq!(new_user("t", u, 1).map(|u| u.external_id).ok(), Some(None));
    }

    #[test]
    fn member_ids_dedupe_and_refuse_self() {
        assert_eq!(
            member_ids("g", ["a", "b", "a"]).ok(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert!(member_ids("g", ["a", "g"]).is_err());
        assert!(member_ids("g", [""]).is_err());
    }
}
