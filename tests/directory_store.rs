//! One directory test suite, run against both store backends: the embedded
//! redb file and a real Redis (REDIS_URL, else redis://127.0.0.1:6379/).
//! Each behaviour below is one async fn taking a backend; `suite!` turns it
//! into `embedded::<name>` and `redis::<name>` tests.

mod support;

use std::sync::Arc;

use portcullis::directory::{
    Address, DirectoryError, Enterprise, Group, Manager, Member, MemberKind, MultiValue, Name,
    ProvisionedVia, User,
};
use portcullis::store::{embedded::EmbeddedStore, redis::RedisStore, Backend};

const ACME: &str = "acme";
const GLOBEX: &str = "globex";

async fn embedded() -> (tempfile::TempDir, Arc<dyn Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Backend> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    (dir, store)
}

async fn redis(tag: &str) -> Arc<dyn Backend> {
    Arc::new(
        RedisStore::connect(&support::redis_url(), &support::unique_prefix(tag))
            .await
            .expect("redis reachable"),
    )
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = super::embedded().await;
                    super::$name(store).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = super::redis(stringify!($name)).await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

suite!(
    create_then_get_round_trips_every_field,
    user_name_is_unique_per_tenant_ignoring_case,
    users_are_found_by_external_id_and_email,
    external_id_is_unique_per_tenant,
    replace_reindexes_user_name_external_id_and_emails,
    replace_onto_a_taken_user_name_is_refused_and_changes_nothing,
    version_mismatch_is_refused_and_changes_nothing,
    concurrent_replaces_with_one_expected_version_let_exactly_one_win,
    tombstone_frees_user_name_and_hides_the_user,
    hard_delete_removes_the_user_its_indexes_and_memberships,
    list_users_is_ordered_by_creation_and_skips_tombstones,
    group_display_name_is_unique_per_tenant_ignoring_case,
    groups_are_found_by_display_name_and_external_id,
    replace_group_renames_and_replaces_members,
    replace_group_with_a_stale_version_is_refused,
    repeated_member_add_is_idempotent,
    removing_an_absent_member_succeeds,
    adding_an_unknown_member_is_refused_and_nothing_is_written,
    groups_of_user_follows_adds_removes_and_deletes,
    nested_group_membership_is_cleaned_up_when_the_child_is_deleted,
    tenant_b_cannot_reach_tenant_a_resources,
    tenant_names_with_key_separators_stay_apart,
    concurrent_member_adds_to_one_group_all_land,
    lookalike_identifiers_match_nothing_and_are_refused,
    user_counts_and_pages_follow_creates_deletes_and_tombstones,
    group_counts_and_pages_follow_creates_replaces_and_deletes,
    pages_past_the_end_and_empty_tenants,
);

fn user(name: &str) -> User {
    User {
        emails: vec![MultiValue {
            value: name.to_string(),
            kind: Some("work".into()),
            primary: Some(true),
            display: None,
        }],
        ..User::new(name)
    }
}

async fn make_user(s: &Arc<dyn Backend>, tenant: &str, name: &str) -> User {
    s.create_user(tenant, user(name)).await.unwrap()
}

async fn make_group(s: &Arc<dyn Backend>, tenant: &str, name: &str) -> Group {
    s.create_group(tenant, Group::new(name)).await.unwrap()
}

fn member_ids(g: &Group) -> Vec<String> {
    g.members.iter().map(|m| m.value.clone()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn user_name_taken(s: &Arc<dyn Backend>, tenant: &str, name: &str) -> bool {
    matches!(
        s.create_user(tenant, user(name)).await,
        Err(DirectoryError::Conflict { what: "userName" })
    )
}

async fn create_then_get_round_trips_every_field(s: Arc<dyn Backend>) {
    let full = User {
        id: "ignored".into(),
        tenant: "ignored".into(),
        external_id: Some("00ujl29u0le5T6Aj10h7".into()),
        user_name: "Jane.Doe@Example.com".into(),
        name: Name {
            formatted: Some("Ms. Jane Q Doe III".into()),
            given_name: Some("Jane".into()),
            family_name: Some("Doe".into()),
            middle_name: Some("Q".into()),
            honorific_prefix: Some("Ms.".into()),
            honorific_suffix: Some("III".into()),
        },
        display_name: Some("Jane Doe".into()),
        nick_name: Some("JD".into()),
        profile_url: Some("https://example.com/jd".into()),
        title: Some("Engineer".into()),
        user_type: Some("Employee".into()),
        preferred_language: Some("en-GB".into()),
        locale: Some("en-GB".into()),
        timezone: Some("Europe/London".into()),
        active: true,
        active_unset: false,
        emails: vec![
            MultiValue {
                value: "jane.doe@example.com".into(),
                kind: Some("work".into()),
                primary: Some(true),
                display: None,
            },
            MultiValue {
                value: "jane@home.example".into(),
                kind: Some("home".into()),
                primary: Some(false),
                display: Some("home".into()),
            },
        ],
        phone_numbers: vec![MultiValue {
            value: "+44 20 7946 0000".into(),
            kind: Some("work".into()),
            ..Default::default()
        }],
        ims: vec![MultiValue {
            value: "jane.doe".into(),
            kind: Some("xmpp".into()),
            ..Default::default()
        }],
        photos: vec![MultiValue {
            value: "https://photos.example.com/jd.jpg".into(),
            kind: Some("photo".into()),
            primary: Some(false),
            ..Default::default()
        }],
        addresses: vec![Address {
            formatted: Some("1 Main St\nLondon".into()),
            street_address: Some("1 Main St".into()),
            locality: Some("London".into()),
            region: Some("Greater London".into()),
            postal_code: Some("N1 1AA".into()),
            country: Some("GB".into()),
            kind: Some("work".into()),
            primary: Some(true),
        }],
        entitlements: vec![MultiValue {
            value: "reports".into(),
            display: Some("Reports".into()),
            ..Default::default()
        }],
        roles: vec![MultiValue {
            value: "auditor".into(),
            ..Default::default()
        }],
        x509_certificates: vec![MultiValue {
            value: "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx".into(),
            ..Default::default()
        }],
        enterprise: Enterprise {
            employee_number: Some("701984".into()),
            cost_center: Some("4130".into()),
            organization: Some("Acme".into()),
            division: Some("R&D".into()),
            department: Some("Platform".into()),
            manager: Some(Manager {
                value: Some("26118915-6090-4610-87e4-49d8ca9f808d".into()),
                reference: Some(
                    "https://gw.example/scim/v2/Users/26118915-6090-4610-87e4-49d8ca9f808d".into(),
                ),
                display_name: Some("John Smith".into()),
            }),
        },
        role: "member".into(),
        provisioned_via: ProvisionedVia::Scim,
        scim_client: Some("jumpcloud".into()),
        idp: None,
        name_id: Some("jane.doe@example.com".into()),
        deleted: true,
        meta: Default::default(),
    };
    let created = s.create_user(ACME, full.clone()).await.unwrap();
    assert_ne!(created.id, "ignored", "the store assigns the id");
    assert_eq!(created.id.len(), 36);
    assert_eq!(created.tenant, ACME);
    assert!(!created.deleted, "a new user is never a tombstone");
    assert_eq!(created.meta.version, 1);
    assert_eq!(created.meta.etag(), "W/\"1\"");
    assert!(created.meta.created_ms > 0);
    assert_eq!(created.meta.created_ms, created.meta.last_modified_ms);

    let expected = User {
        id: created.id.clone(),
        tenant: ACME.into(),
        deleted: false,
        meta: created.meta.clone(),
        ..full
    };
    assert_eq!(created, expected);
    assert_eq!(s.get_user(ACME, &created.id).await.unwrap(), Some(expected));
    assert_eq!(s.get_user(ACME, "no-such-id").await.unwrap(), None);

    let empty = s
        .create_user(ACME, User::new("   "))
        .await
        .expect_err("blank userName");
    assert!(matches!(empty, DirectoryError::Invalid(_)), "{empty:?}");
}

async fn user_name_is_unique_per_tenant_ignoring_case(s: Arc<dyn Backend>) {
    let alice = make_user(&s, ACME, "Alice@Example.com").await;
    assert!(user_name_taken(&s, ACME, "alice@example.COM").await);
    assert!(user_name_taken(&s, ACME, "Alice@Example.com").await);

    let other_tenant = make_user(&s, GLOBEX, "alice@example.com").await;
    assert_ne!(other_tenant.id, alice.id);

    for probe in [
        "ALICE@EXAMPLE.COM",
        "alice@example.com",
        "Alice@Example.com",
    ] {
        let found = s.user_by_user_name(ACME, probe).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(alice.id.clone()), "{probe}");
    }
    assert_eq!(
        s.user_by_user_name(GLOBEX, "ALICE@example.com")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(other_tenant.id)
    );
    assert_eq!(s.user_by_user_name(ACME, "bob").await.unwrap(), None);
    assert_eq!(s.list_users(ACME).await.unwrap().len(), 1);
}

async fn users_are_found_by_external_id_and_email(s: Arc<dyn Backend>) {
    let a = s
        .create_user(
            ACME,
            User {
                external_id: Some("Ext-1".into()),
                ..user("a@example.com")
            },
        )
        .await
        .unwrap();
    let b = s
        .create_user(
            ACME,
            User {
                emails: vec![
                    MultiValue {
                        value: "B@Example.com".into(),
                        ..Default::default()
                    },
                    MultiValue {
                        value: "Shared@Example.com".into(),
                        ..Default::default()
                    },
                ],
                ..User::new("b")
            },
        )
        .await
        .unwrap();
    let c = s
        .create_user(
            ACME,
            User {
                emails: vec![MultiValue {
                    value: "shared@example.com".into(),
                    ..Default::default()
                }],
                ..User::new("c")
            },
        )
        .await
        .unwrap();

    let by_ext = s.user_by_external_id(ACME, "Ext-1").await.unwrap();
    assert_eq!(by_ext.map(|u| u.id), Some(a.id.clone()));
    assert_eq!(
        s.user_by_external_id(ACME, "ext-1").await.unwrap(),
        None,
        "externalId is case-exact"
    );
    assert_eq!(s.user_by_external_id(GLOBEX, "Ext-1").await.unwrap(), None);

    let by_mail: Vec<String> = s
        .users_by_email(ACME, "b@EXAMPLE.com")
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(by_mail, vec![b.id.clone()]);
    let mut shared: Vec<String> = s
        .users_by_email(ACME, "SHARED@example.com")
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    // Two users created in the same millisecond have no defined order.
    shared.sort();
    let mut want = vec![b.id, c.id];
    want.sort();
    assert_eq!(shared, want, "every holder of the address");
    assert!(s
        .users_by_email(ACME, "nobody@example.com")
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .users_by_email(GLOBEX, "a@example.com")
        .await
        .unwrap()
        .is_empty());
}

async fn external_id_is_unique_per_tenant(s: Arc<dyn Backend>) {
    let with_ext = |name: &str| User {
        external_id: Some("ext-42".into()),
        ..user(name)
    };
    s.create_user(ACME, with_ext("one")).await.unwrap();
    let err = s.create_user(ACME, with_ext("two")).await.unwrap_err();
    assert!(
        matches!(err, DirectoryError::Conflict { what: "externalId" }),
        "{err:?}"
    );
    assert_eq!(
        s.user_by_user_name(ACME, "two").await.unwrap(),
        None,
        "a refused create leaves nothing behind"
    );
    s.create_user(GLOBEX, with_ext("two")).await.unwrap();
    let empty = s
        .create_user(
            ACME,
            User {
                external_id: Some(String::new()),
                ..user("three")
            },
        )
        .await
        .unwrap();
    assert_eq!(empty.external_id, None, "an empty externalId means none");
}

async fn replace_reindexes_user_name_external_id_and_emails(s: Arc<dyn Backend>) {
    let u = s
        .create_user(
            ACME,
            User {
                external_id: Some("old-ext".into()),
                ..user("old@example.com")
            },
        )
        .await
        .unwrap();
    let replaced = s
        .replace_user(
            ACME,
            User {
                id: u.id.clone(),
                external_id: Some("new-ext".into()),
                display_name: Some("Renamed".into()),
                ..user("New@Example.com")
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(replaced.id, u.id);
    assert_eq!(replaced.meta.version, 2);
    assert_eq!(replaced.meta.created_ms, u.meta.created_ms);
    assert!(replaced.meta.last_modified_ms >= u.meta.last_modified_ms);
    assert_eq!(
        s.get_user(ACME, &u.id).await.unwrap(),
        Some(replaced.clone())
    );

    assert_eq!(
        s.user_by_user_name(ACME, "old@example.com").await.unwrap(),
        None
    );
    assert_eq!(s.user_by_external_id(ACME, "old-ext").await.unwrap(), None);
    assert!(s
        .users_by_email(ACME, "old@example.com")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.user_by_user_name(ACME, "new@example.com")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(u.id.clone())
    );
    assert_eq!(
        s.user_by_external_id(ACME, "new-ext")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(u.id.clone())
    );
    assert_eq!(
        s.users_by_email(ACME, "new@example.com")
            .await
            .unwrap()
            .len(),
        1
    );

    assert!(user_name_taken(&s, ACME, "NEW@example.com").await);
    make_user(&s, ACME, "old@example.com").await;

    // Changing only the case of one's own userName is not a conflict.
    let recased = s
        .replace_user(
            ACME,
            User {
                user_name: "NEW@EXAMPLE.COM".into(),
                ..replaced.clone()
            },
            Some(2),
        )
        .await
        .unwrap();
    assert_eq!(recased.meta.version, 3);

    let missing = s
        .replace_user(
            ACME,
            User {
                id: "no-such-id".into(),
                ..user("x")
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing, DirectoryError::NotFound { what: "user" }),
        "{missing:?}"
    );
}

async fn replace_onto_a_taken_user_name_is_refused_and_changes_nothing(s: Arc<dyn Backend>) {
    make_user(&s, ACME, "taken@example.com").await;
    let u = make_user(&s, ACME, "mine@example.com").await;
    let err = s
        .replace_user(
            ACME,
            User {
                id: u.id.clone(),
                ..user("TAKEN@example.com")
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DirectoryError::Conflict { what: "userName" }),
        "{err:?}"
    );
    assert_eq!(s.get_user(ACME, &u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(
        s.user_by_user_name(ACME, "mine@example.com")
            .await
            .unwrap()
            .map(|x| x.id),
        Some(u.id)
    );
}

async fn version_mismatch_is_refused_and_changes_nothing(s: Arc<dyn Backend>) {
    let u = make_user(&s, ACME, "v@example.com").await;
    let attempt = User {
        id: u.id.clone(),
        title: Some("changed".into()),
        ..user("renamed@example.com")
    };
    let err = s
        .replace_user(ACME, attempt.clone(), Some(7))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DirectoryError::VersionMismatch {
                expected: 7,
                current: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.get_user(ACME, &u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(
        s.user_by_user_name(ACME, "renamed@example.com")
            .await
            .unwrap(),
        None,
        "no index moved"
    );
    assert!(s
        .user_by_user_name(ACME, "v@example.com")
        .await
        .unwrap()
        .is_some());

    let ok = s.replace_user(ACME, attempt, Some(1)).await.unwrap();
    assert_eq!(ok.meta.version, 2);
    assert_eq!(ok.meta.etag(), "W/\"2\"");
}

async fn concurrent_replaces_with_one_expected_version_let_exactly_one_win(s: Arc<dyn Backend>) {
    let u = make_user(&s, ACME, "race@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let attempt = User {
            id: u.id.clone(),
            title: Some(format!("writer {i}")),
            ..user("race@example.com")
        };
        tasks.push(tokio::spawn(async move {
            s.replace_user(ACME, attempt, Some(1)).await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => winners += 1,
            Err(DirectoryError::VersionMismatch { .. }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners, 1);
    let stored = s.get_user(ACME, &u.id).await.unwrap().unwrap();
    assert_eq!(stored.meta.version, 2);
}

async fn tombstone_frees_user_name_and_hides_the_user(s: Arc<dyn Backend>) {
    let u = s
        .create_user(
            ACME,
            User {
                external_id: Some("ext-t".into()),
                ..user("Gone@Example.com")
            },
        )
        .await
        .unwrap();
    let g = make_group(&s, ACME, "Team").await;
    s.add_members(ACME, &g.id, std::slice::from_ref(&u.id))
        .await
        .unwrap();

    let tomb = s.tombstone_user(ACME, &u.id).await.unwrap();
    assert!(tomb.deleted);
    assert!(!tomb.active);
    assert_eq!(tomb.meta.version, 2);

    assert_eq!(
        s.get_user(ACME, &u.id).await.unwrap(),
        Some(tomb.clone()),
        "kept by id for audit"
    );
    assert_eq!(
        s.user_by_user_name(ACME, "gone@example.com").await.unwrap(),
        None
    );
    assert_eq!(s.user_by_external_id(ACME, "ext-t").await.unwrap(), None);
    assert!(s
        .users_by_email(ACME, "gone@example.com")
        .await
        .unwrap()
        .is_empty());
    assert!(s.list_users(ACME).await.unwrap().is_empty());
    assert!(s.groups_of_user(ACME, &u.id).await.unwrap().is_empty());
    assert!(s
        .get_group(ACME, &g.id)
        .await
        .unwrap()
        .unwrap()
        .members
        .is_empty());

    let again = s.tombstone_user(ACME, &u.id).await.unwrap_err();
    assert!(
        matches!(again, DirectoryError::NotFound { .. }),
        "{again:?}"
    );
    let replace = s
        .replace_user(
            ACME,
            User {
                id: u.id.clone(),
                ..user("x")
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(replace, DirectoryError::NotFound { .. }),
        "{replace:?}"
    );
    let add = s
        .add_members(ACME, &g.id, std::slice::from_ref(&u.id))
        .await
        .unwrap_err();
    assert!(matches!(add, DirectoryError::Invalid(_)), "{add:?}");

    let reborn = s
        .create_user(
            ACME,
            User {
                external_id: Some("ext-t".into()),
                ..user("gone@example.com")
            },
        )
        .await
        .unwrap();
    assert_ne!(reborn.id, u.id);
    assert_eq!(
        s.user_by_user_name(ACME, "GONE@example.com")
            .await
            .unwrap()
            .map(|x| x.id),
        Some(reborn.id)
    );

    // A tombstone can still be purged for good.
    s.delete_user(ACME, &u.id).await.unwrap();
    assert_eq!(s.get_user(ACME, &u.id).await.unwrap(), None);
}

async fn hard_delete_removes_the_user_its_indexes_and_memberships(s: Arc<dyn Backend>) {
    let u = s
        .create_user(
            ACME,
            User {
                external_id: Some("ext-d".into()),
                ..user("del@example.com")
            },
        )
        .await
        .unwrap();
    let keep = make_user(&s, ACME, "keep@example.com").await;
    let g1 = make_group(&s, ACME, "One").await;
    let g2 = make_group(&s, ACME, "Two").await;
    let both = vec![u.id.clone(), keep.id.clone()];
    s.add_members(ACME, &g1.id, &both).await.unwrap();
    let before = s.add_members(ACME, &g2.id, &both).await.unwrap();

    s.delete_user(ACME, &u.id).await.unwrap();
    assert_eq!(s.get_user(ACME, &u.id).await.unwrap(), None);
    assert_eq!(
        s.user_by_user_name(ACME, "del@example.com").await.unwrap(),
        None
    );
    assert_eq!(s.user_by_external_id(ACME, "ext-d").await.unwrap(), None);
    assert!(s
        .users_by_email(ACME, "del@example.com")
        .await
        .unwrap()
        .is_empty());
    assert!(s.groups_of_user(ACME, &u.id).await.unwrap().is_empty());
    for g in [&g1, &g2] {
        let g = s.get_group(ACME, &g.id).await.unwrap().unwrap();
        assert_eq!(member_ids(&g), vec![keep.id.clone()], "{}", g.display_name);
    }
    let g2_after = s.get_group(ACME, &g2.id).await.unwrap().unwrap();
    assert_eq!(
        g2_after.meta.version,
        before.version + 1,
        "a membership change bumps the group's version"
    );
    assert_eq!(s.groups_of_user(ACME, &keep.id).await.unwrap().len(), 2);

    let again = s.delete_user(ACME, &u.id).await.unwrap_err();
    assert!(
        matches!(again, DirectoryError::NotFound { what: "user" }),
        "{again:?}"
    );
    make_user(&s, ACME, "del@example.com").await;
}

async fn list_users_is_ordered_by_creation_and_skips_tombstones(s: Arc<dyn Backend>) {
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            make_user(&s, ACME, &format!("user{i:02}@example.com"))
                .await
                .id,
        );
    }
    make_user(&s, GLOBEX, "other@example.com").await;
    s.tombstone_user(ACME, &ids[3]).await.unwrap();
    s.delete_user(ACME, &ids[7]).await.unwrap();

    let listed = s.list_users(ACME).await.unwrap();
    let mut want: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 7)
        .map(|(_, id)| id.clone())
        .collect();
    // Users created in the same millisecond are ordered by id.
    let created: std::collections::HashMap<String, u64> = listed
        .iter()
        .map(|u| (u.id.clone(), u.meta.created_ms))
        .collect();
    want.sort_by_key(|id| (created[id], id.clone()));
    assert_eq!(
        listed.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        s.list_users(ACME).await.unwrap(),
        listed,
        "the order is stable"
    );
    assert_eq!(s.list_users(GLOBEX).await.unwrap().len(), 1);
    assert!(s.list_users("empty-tenant").await.unwrap().is_empty());
}

async fn group_display_name_is_unique_per_tenant_ignoring_case(s: Arc<dyn Backend>) {
    let g = make_group(&s, ACME, "CRA Admins").await;
    assert_eq!(g.meta.version, 1);
    assert_eq!(g.tenant, ACME);
    let err = s
        .create_group(ACME, Group::new("cra admins"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DirectoryError::Conflict {
                what: "displayName"
            }
        ),
        "{err:?}"
    );
    make_group(&s, GLOBEX, "CRA ADMINS").await;
    assert_eq!(s.list_groups(ACME).await.unwrap().len(), 1);

    let blank = s.create_group(ACME, Group::new(" ")).await.unwrap_err();
    assert!(matches!(blank, DirectoryError::Invalid(_)), "{blank:?}");

    s.delete_group(ACME, &g.id).await.unwrap();
    assert_eq!(s.get_group(ACME, &g.id).await.unwrap(), None);
    make_group(&s, ACME, "cra admins").await;
    let again = s.delete_group(ACME, &g.id).await.unwrap_err();
    assert!(
        matches!(again, DirectoryError::NotFound { what: "group" }),
        "{again:?}"
    );
}

async fn groups_are_found_by_display_name_and_external_id(s: Arc<dyn Backend>) {
    let g = s
        .create_group(
            ACME,
            Group {
                external_id: Some("grp-ext".into()),
                ..Group::new("Engineering")
            },
        )
        .await
        .unwrap();
    let by_name = s.group_by_display_name(ACME, "ENGINEERING").await.unwrap();
    assert_eq!(by_name, Some(g.clone()));
    let by_ext = s.group_by_external_id(ACME, "grp-ext").await.unwrap();
    assert_eq!(by_ext, Some(g.clone()));
    assert_eq!(s.get_group(ACME, &g.id).await.unwrap(), Some(g.clone()));
    assert_eq!(
        s.group_by_display_name(GLOBEX, "Engineering")
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.group_by_external_id(ACME, "GRP-EXT").await.unwrap(), None);
    let dup = s
        .create_group(
            ACME,
            Group {
                external_id: Some("grp-ext".into()),
                ..Group::new("Other")
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(dup, DirectoryError::Conflict { what: "externalId" }),
        "{dup:?}"
    );
}

async fn replace_group_renames_and_replaces_members(s: Arc<dyn Backend>) {
    let a = make_user(&s, ACME, "a@example.com").await;
    let b = make_user(&s, ACME, "b@example.com").await;
    let c = s
        .create_user(
            ACME,
            User {
                display_name: Some("Cee".into()),
                ..user("c@example.com")
            },
        )
        .await
        .unwrap();
    let g = s
        .create_group(
            ACME,
            Group {
                members: vec![
                    Member {
                        value: a.id.clone(),
                        ..Default::default()
                    },
                    Member {
                        value: b.id.clone(),
                        ..Default::default()
                    },
                ],
                ..Group::new("Old Name")
            },
        )
        .await
        .unwrap();
    assert_eq!(member_ids(&g), sorted(vec![a.id.clone(), b.id.clone()]));
    assert_eq!(s.get_group(ACME, &g.id).await.unwrap(), Some(g.clone()));

    let replaced = s
        .replace_group(
            ACME,
            Group {
                id: g.id.clone(),
                external_id: Some("x1".into()),
                members: vec![
                    Member {
                        value: b.id.clone(),
                        ..Default::default()
                    },
                    Member {
                        value: c.id.clone(),
                        kind: MemberKind::Group,
                        display: Some("client-sent label".into()),
                    },
                ],
                ..Group::new("New Name")
            },
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(replaced.meta.version, 2);
    assert_eq!(replaced.meta.created_ms, g.meta.created_ms);
    assert_eq!(
        member_ids(&replaced),
        sorted(vec![b.id.clone(), c.id.clone()])
    );
    let c_entry = replaced
        .members
        .iter()
        .find(|m| m.value == c.id)
        .cloned()
        .unwrap();
    assert_eq!(
        c_entry.kind,
        MemberKind::User,
        "the store resolves the type"
    );
    assert_eq!(c_entry.display.as_deref(), Some("Cee"));
    assert_eq!(
        s.get_group(ACME, &g.id).await.unwrap(),
        Some(replaced.clone())
    );

    assert_eq!(
        s.group_by_display_name(ACME, "old name").await.unwrap(),
        None
    );
    assert_eq!(
        s.group_by_display_name(ACME, "new name")
            .await
            .unwrap()
            .map(|g| g.id),
        Some(g.id.clone())
    );
    assert!(s.groups_of_user(ACME, &a.id).await.unwrap().is_empty());
    assert_eq!(
        s.groups_of_user(ACME, &c.id).await.unwrap()[0].display_name,
        "New Name"
    );
    make_group(&s, ACME, "Old Name").await;

    let bad = s
        .replace_group(
            ACME,
            Group {
                id: g.id.clone(),
                members: vec![Member {
                    value: "nobody".into(),
                    ..Default::default()
                }],
                ..Group::new("Third Name")
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, DirectoryError::Invalid(_)), "{bad:?}");
    assert_eq!(s.get_group(ACME, &g.id).await.unwrap(), Some(replaced));

    let missing = s
        .replace_group(
            ACME,
            Group {
                id: "no-such-group".into(),
                ..Group::new("Whatever")
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing, DirectoryError::NotFound { what: "group" }),
        "{missing:?}"
    );
}

async fn replace_group_with_a_stale_version_is_refused(s: Arc<dyn Backend>) {
    let u = make_user(&s, ACME, "u@example.com").await;
    let g = make_group(&s, ACME, "Stale").await;
    // A membership change lands between the client's read and its write.
    s.add_members(ACME, &g.id, std::slice::from_ref(&u.id))
        .await
        .unwrap();
    let err = s
        .replace_group(
            ACME,
            Group {
                id: g.id.clone(),
                ..Group::new("Renamed")
            },
            Some(g.meta.version),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DirectoryError::VersionMismatch {
                expected: 1,
                current: 2
            }
        ),
        "{err:?}"
    );
    let stored = s.get_group(ACME, &g.id).await.unwrap().unwrap();
    assert_eq!(stored.display_name, "Stale");
    assert_eq!(member_ids(&stored), vec![u.id]);
}

async fn repeated_member_add_is_idempotent(s: Arc<dyn Backend>) {
    let u = make_user(&s, ACME, "jc@example.com").await;
    let g = make_group(&s, ACME, "JumpCloud Group").await;
    let once = s
        .add_members(ACME, &g.id, std::slice::from_ref(&u.id))
        .await
        .unwrap();
    assert_eq!(once.changed, vec![u.id.clone()]);
    assert_eq!(once.version, 2);
    let twice = s
        .add_members(ACME, &g.id, &[u.id.clone(), u.id.clone()])
        .await
        .unwrap();
    assert!(twice.changed.is_empty(), "nothing new");
    assert_eq!(twice.version, 2, "a no-op leaves the version alone");

    let stored = s.get_group(ACME, &g.id).await.unwrap().unwrap();
    assert_eq!(member_ids(&stored), vec![u.id.clone()]);
    assert_eq!(stored.members[0].kind, MemberKind::User);
    assert_eq!(stored.members[0].display.as_deref(), Some("jc@example.com"));
    assert_eq!(stored.meta.version, 2);
    assert_eq!(s.groups_of_user(ACME, &u.id).await.unwrap().len(), 1);

    let none = s.add_members(ACME, &g.id, &[]).await.unwrap();
    assert!(none.changed.is_empty());
    let missing = s
        .add_members(ACME, "no-such-group", std::slice::from_ref(&u.id))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, DirectoryError::NotFound { what: "group" }),
        "{missing:?}"
    );
}

async fn removing_an_absent_member_succeeds(s: Arc<dyn Backend>) {
    let u = make_user(&s, ACME, "r@example.com").await;
    let other = make_user(&s, ACME, "other@example.com").await;
    let g = make_group(&s, ACME, "Removals").await;
    s.add_members(ACME, &g.id, std::slice::from_ref(&u.id))
        .await
        .unwrap();

    let absent = s
        .remove_members(
            ACME,
            &g.id,
            &[other.id.clone(), "never-existed".to_string()],
        )
        .await
        .unwrap();
    assert!(absent.changed.is_empty());
    assert_eq!(absent.version, 2);

    let removed = s
        .remove_members(ACME, &g.id, &[u.id.clone(), u.id.clone()])
        .await
        .unwrap();
    assert_eq!(removed.changed, vec![u.id.clone()]);
    assert_eq!(removed.version, 3);
    let again = s
        .remove_members(ACME, &g.id, std::slice::from_ref(&u.id))
        .await
        .unwrap();
    assert!(again.changed.is_empty(), "removing twice is fine");
    assert!(s
        .get_group(ACME, &g.id)
        .await
        .unwrap()
        .unwrap()
        .members
        .is_empty());
    assert!(s.groups_of_user(ACME, &u.id).await.unwrap().is_empty());

    let missing = s
        .remove_members(ACME, "no-such-group", std::slice::from_ref(&u.id))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, DirectoryError::NotFound { what: "group" }),
        "{missing:?}"
    );
}

async fn adding_an_unknown_member_is_refused_and_nothing_is_written(s: Arc<dyn Backend>) {
    let u = make_user(&s, ACME, "known@example.com").await;
    let g = make_group(&s, ACME, "Strict").await;
    let err = s
        .add_members(ACME, &g.id, &[u.id.clone(), "unknown-id".to_string()])
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::Invalid(_)), "{err:?}");
    let stored = s.get_group(ACME, &g.id).await.unwrap().unwrap();
    assert!(
        stored.members.is_empty(),
        "the known id was not added either"
    );
    assert_eq!(stored.meta.version, 1);
    assert!(s.groups_of_user(ACME, &u.id).await.unwrap().is_empty());

    let own = s
        .add_members(ACME, &g.id, std::slice::from_ref(&g.id))
        .await
        .unwrap_err();
    assert!(matches!(own, DirectoryError::Invalid(_)), "{own:?}");

    let create = s
        .create_group(
            ACME,
            Group {
                members: vec![Member {
                    value: "unknown-id".into(),
                    ..Default::default()
                }],
                ..Group::new("Never")
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(create, DirectoryError::Invalid(_)), "{create:?}");
    assert_eq!(s.group_by_display_name(ACME, "Never").await.unwrap(), None);
}

async fn groups_of_user_follows_adds_removes_and_deletes(s: Arc<dyn Backend>) {
    let u = make_user(&s, ACME, "member@example.com").await;
    let zeta = make_group(&s, ACME, "zeta").await;
    let alpha = make_group(&s, ACME, "Alpha").await;
    let beta = make_group(&s, ACME, "beta").await;
    assert!(s.groups_of_user(ACME, &u.id).await.unwrap().is_empty());
    assert!(s
        .groups_of_user(ACME, "no-such-user")
        .await
        .unwrap()
        .is_empty());

    for g in [&zeta, &alpha, &beta] {
        s.add_members(ACME, &g.id, std::slice::from_ref(&u.id))
            .await
            .unwrap();
    }
    let names = |refs: Vec<portcullis::directory::GroupRef>| {
        refs.into_iter().map(|r| r.display_name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(s.groups_of_user(ACME, &u.id).await.unwrap()),
        vec!["Alpha", "beta", "zeta"],
        "ordered by displayName ignoring case"
    );
    let refs = s.groups_of_user(ACME, &u.id).await.unwrap();
    assert_eq!(refs[0].id, alpha.id);

    s.remove_members(ACME, &beta.id, std::slice::from_ref(&u.id))
        .await
        .unwrap();
    assert_eq!(
        names(s.groups_of_user(ACME, &u.id).await.unwrap()),
        vec!["Alpha", "zeta"]
    );
    s.delete_group(ACME, &zeta.id).await.unwrap();
    assert_eq!(
        names(s.groups_of_user(ACME, &u.id).await.unwrap()),
        vec!["Alpha"]
    );
    s.replace_group(
        ACME,
        Group {
            id: alpha.id.clone(),
            ..Group::new("Alpha Renamed")
        },
        None,
    )
    .await
    .unwrap();
    assert!(
        s.groups_of_user(ACME, &u.id).await.unwrap().is_empty(),
        "replacing with no members empties the reverse index"
    );
    assert!(s.groups_of_user(GLOBEX, &u.id).await.unwrap().is_empty());
}

async fn nested_group_membership_is_cleaned_up_when_the_child_is_deleted(s: Arc<dyn Backend>) {
    let parent = make_group(&s, ACME, "Parent").await;
    let child = make_group(&s, ACME, "Child").await;
    let change = s
        .add_members(ACME, &parent.id, std::slice::from_ref(&child.id))
        .await
        .unwrap();
    assert_eq!(change.changed, vec![child.id.clone()]);
    let stored = s.get_group(ACME, &parent.id).await.unwrap().unwrap();
    assert_eq!(stored.members[0].kind, MemberKind::Group);
    assert_eq!(stored.members[0].display.as_deref(), Some("Child"));
    assert_eq!(
        s.groups_of_user(ACME, &child.id).await.unwrap()[0].id,
        parent.id
    );

    s.delete_group(ACME, &child.id).await.unwrap();
    let stored = s.get_group(ACME, &parent.id).await.unwrap().unwrap();
    assert!(stored.members.is_empty());
    assert_eq!(stored.meta.version, 3);
    assert_eq!(s.group_by_display_name(ACME, "child").await.unwrap(), None);
}

async fn tenant_b_cannot_reach_tenant_a_resources(s: Arc<dyn Backend>) {
    let a_user = s
        .create_user(
            ACME,
            User {
                external_id: Some("shared-ext".into()),
                ..user("person@example.com")
            },
        )
        .await
        .unwrap();
    let a_group = make_group(&s, ACME, "Acme Staff").await;
    s.add_members(ACME, &a_group.id, std::slice::from_ref(&a_user.id))
        .await
        .unwrap();

    assert_eq!(s.get_user(GLOBEX, &a_user.id).await.unwrap(), None);
    assert_eq!(
        s.user_by_user_name(GLOBEX, "person@example.com")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.user_by_external_id(GLOBEX, "shared-ext").await.unwrap(),
        None
    );
    assert!(s
        .users_by_email(GLOBEX, "person@example.com")
        .await
        .unwrap()
        .is_empty());
    assert!(s.list_users(GLOBEX).await.unwrap().is_empty());
    assert_eq!(s.get_group(GLOBEX, &a_group.id).await.unwrap(), None);
    assert!(s.list_groups(GLOBEX).await.unwrap().is_empty());
    assert!(s
        .groups_of_user(GLOBEX, &a_user.id)
        .await
        .unwrap()
        .is_empty());

    let replace = s
        .replace_user(
            GLOBEX,
            User {
                id: a_user.id.clone(),
                ..user("hijack@example.com")
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(replace, DirectoryError::NotFound { .. }),
        "{replace:?}"
    );
    let delete = s.delete_user(GLOBEX, &a_user.id).await.unwrap_err();
    assert!(
        matches!(delete, DirectoryError::NotFound { .. }),
        "{delete:?}"
    );
    let tomb = s.tombstone_user(GLOBEX, &a_user.id).await.unwrap_err();
    assert!(matches!(tomb, DirectoryError::NotFound { .. }), "{tomb:?}");
    let g_delete = s.delete_group(GLOBEX, &a_group.id).await.unwrap_err();
    assert!(
        matches!(g_delete, DirectoryError::NotFound { .. }),
        "{g_delete:?}"
    );
    let remove = s
        .remove_members(GLOBEX, &a_group.id, std::slice::from_ref(&a_user.id))
        .await
        .unwrap_err();
    assert!(
        matches!(remove, DirectoryError::NotFound { .. }),
        "{remove:?}"
    );

    let b_group = make_group(&s, GLOBEX, "Globex Staff").await;
    let cross = s
        .add_members(GLOBEX, &b_group.id, std::slice::from_ref(&a_user.id))
        .await
        .unwrap_err();
    assert!(matches!(cross, DirectoryError::Invalid(_)), "{cross:?}");

    // Everything of tenant A is intact.
    assert_eq!(
        s.get_user(ACME, &a_user.id).await.unwrap(),
        Some(a_user.clone())
    );
    assert_eq!(
        member_ids(&s.get_group(ACME, &a_group.id).await.unwrap().unwrap()),
        vec![a_user.id]
    );
}

async fn tenant_names_with_key_separators_stay_apart(s: Arc<dyn Backend>) {
    let tenants = ["acme", "acme:idx", "acme}:x", "{acme}", "acme%3A"];
    let mut ids = Vec::new();
    for t in tenants {
        ids.push(make_user(&s, t, "same@example.com").await.id);
        make_group(&s, t, "Same").await;
    }
    for (t, id) in tenants.iter().zip(&ids) {
        let listed = s.list_users(t).await.unwrap();
        assert_eq!(listed.len(), 1, "{t}");
        assert_eq!(&listed[0].id, id, "{t}");
        assert_eq!(listed[0].tenant, *t);
        assert_eq!(s.list_groups(t).await.unwrap().len(), 1, "{t}");
    }
    let bad = s.create_user("", user("x")).await.unwrap_err();
    assert!(matches!(bad, DirectoryError::Invalid(_)), "{bad:?}");
}

async fn concurrent_member_adds_to_one_group_all_land(s: Arc<dyn Backend>) {
    const N: usize = 40;
    let g = make_group(&s, ACME, "Everyone").await;
    let mut users = Vec::new();
    for i in 0..N {
        users.push(make_user(&s, ACME, &format!("c{i}@example.com")).await.id);
    }
    let mut tasks = Vec::new();
    for (i, id) in users.iter().enumerate() {
        let (s, gid, id) = (s.clone(), g.id.clone(), id.clone());
        // Every third task repeats its add, as JumpCloud does.
        let repeats = if i % 3 == 0 { 2 } else { 1 };
        tasks.push(tokio::spawn(async move {
            for _ in 0..repeats {
                s.add_members(ACME, &gid, std::slice::from_ref(&id))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stored = s.get_group(ACME, &g.id).await.unwrap().unwrap();
    assert_eq!(member_ids(&stored), sorted(users.clone()), "no lost update");
    assert_eq!(
        stored.meta.version,
        1 + N as u64,
        "one version per real change"
    );
    for id in &users {
        assert_eq!(s.groups_of_user(ACME, id).await.unwrap().len(), 1);
    }
}

async fn lookalike_identifiers_match_nothing_and_are_refused(s: Arc<dyn Backend>) {
    let kate = make_user(&s, ACME, "kate@a.example").await;
    // U+212A KELVIN SIGN lowercases to an ASCII "k"; fullwidth letters are
    // "k", "a", "t", "e" under NFKC.
    for lookalike in [
        "\u{212A}ate@a.example",
        "\u{FF4B}\u{FF41}\u{FF54}\u{FF45}@a.example",
    ] {
        assert_eq!(
            s.user_by_user_name(ACME, lookalike).await.unwrap(),
            None,
            "{lookalike}"
        );
        assert!(s.users_by_email(ACME, lookalike).await.unwrap().is_empty());
        assert!(
            matches!(
                s.create_user(ACME, user(lookalike)).await,
                Err(DirectoryError::Invalid(_))
            ),
            "{lookalike}"
        );
        let renamed = User {
            user_name: lookalike.to_string(),
            ..kate.clone()
        };
        assert!(matches!(
            s.replace_user(ACME, renamed, None).await,
            Err(DirectoryError::Invalid(_))
        ));
    }
    // Domains must be ASCII (the IDNA A-label), in userNames and emails.
    for bad in [
        user("kate@b\u{fc}cher.example"),
        User {
            emails: vec![MultiValue {
                value: "kate@b\u{fc}cher.example".into(),
                ..MultiValue::default()
            }],
            ..User::new("kate2@a.example")
        },
    ] {
        assert!(matches!(
            s.create_user(ACME, bad).await,
            Err(DirectoryError::Invalid(_))
        ));
    }
    // Kate is untouched and still found; a normalised non-ASCII local part
    // stays case-insensitive.
    assert_eq!(
        s.user_by_user_name(ACME, "KATE@a.example")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(kate.id.clone())
    );
    let jose = make_user(&s, ACME, "Jos\u{e9}@a.example").await;
    assert_eq!(
        s.user_by_user_name(ACME, "JOS\u{c9}@A.EXAMPLE")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(jose.id)
    );
    assert_eq!(s.list_users(ACME).await.unwrap().len(), 2);
}

/// Every (offset, limit) page of the tenant's users, and its count, agrees
/// with the full listing.
async fn assert_user_pages(s: &Arc<dyn Backend>, tenant: &str) -> Vec<User> {
    let all = s.list_users(tenant).await.unwrap();
    let n = all.len();
    assert_eq!(s.count_users(tenant).await.unwrap(), n as u64, "{tenant}");
    for offset in 0..=n + 1 {
        for limit in [0, 1, 2, 3, n, n + 5] {
            let page = s.users_page(tenant, offset, limit).await.unwrap();
            let want: Vec<User> = all.iter().skip(offset).take(limit).cloned().collect();
            assert_eq!(page.total, n as u64, "{tenant} {offset} {limit}");
            assert_eq!(page.items, want, "{tenant} offset {offset} limit {limit}");
        }
    }
    all
}

async fn assert_group_pages(s: &Arc<dyn Backend>, tenant: &str) -> Vec<Group> {
    let all = s.list_groups(tenant).await.unwrap();
    let n = all.len();
    assert_eq!(s.count_groups(tenant).await.unwrap(), n as u64, "{tenant}");
    for offset in 0..=n + 1 {
        for limit in [0, 1, 2, n, n + 5] {
            let page = s.groups_page(tenant, offset, limit).await.unwrap();
            let want: Vec<Group> = all.iter().skip(offset).take(limit).cloned().collect();
            assert_eq!(page.total, n as u64, "{tenant} {offset} {limit}");
            assert_eq!(page.items, want, "{tenant} offset {offset} limit {limit}");
        }
    }
    all
}

async fn user_counts_and_pages_follow_creates_deletes_and_tombstones(s: Arc<dyn Backend>) {
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(make_user(&s, ACME, &format!("p{i}@example.com")).await.id);
    }
    for i in 0..3 {
        make_user(&s, GLOBEX, &format!("g{i}@example.com")).await;
    }
    assert_eq!(assert_user_pages(&s, ACME).await.len(), 9);
    assert_eq!(assert_user_pages(&s, GLOBEX).await.len(), 3);

    // A tombstone leaves the count and the pages, and a hard delete of the
    // tombstone does not count it twice.
    s.tombstone_user(ACME, &ids[2]).await.unwrap();
    assert_eq!(s.count_users(ACME).await.unwrap(), 8);
    let listed = assert_user_pages(&s, ACME).await;
    assert!(listed.iter().all(|u| u.id != ids[2]));
    s.delete_user(ACME, &ids[2]).await.unwrap();
    assert_eq!(s.count_users(ACME).await.unwrap(), 8);
    s.delete_user(ACME, &ids[5]).await.unwrap();
    assert_eq!(assert_user_pages(&s, ACME).await.len(), 7);

    // Re-created (same userName as the tombstoned one): a new, last entry.
    let again = make_user(&s, ACME, "p2@example.com").await;
    let listed = assert_user_pages(&s, ACME).await;
    assert_eq!(listed.len(), 8);
    assert!(listed.contains(&again));

    // A replace keeps the user's place and the count.
    let mut u = s.get_user(ACME, &ids[0]).await.unwrap().unwrap();
    u.display_name = Some("Renamed".into());
    s.replace_user(ACME, u, None).await.unwrap();
    let before: Vec<String> = listed.iter().map(|u| u.id.clone()).collect();
    let listed = assert_user_pages(&s, ACME).await;
    assert_eq!(
        listed.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        before
    );
    let renamed = listed.iter().find(|u| u.id == ids[0]).unwrap();
    assert_eq!(renamed.display_name.as_deref(), Some("Renamed"));

    // The other tenant never moved.
    assert_eq!(assert_user_pages(&s, GLOBEX).await.len(), 3);
    // Deleting everyone brings the count back to zero.
    for u in s.list_users(ACME).await.unwrap() {
        s.delete_user(ACME, &u.id).await.unwrap();
    }
    assert_eq!(assert_user_pages(&s, ACME).await.len(), 0);
    assert_eq!(s.count_users(GLOBEX).await.unwrap(), 3);
}

async fn group_counts_and_pages_follow_creates_replaces_and_deletes(s: Arc<dyn Backend>) {
    let ann = make_user(&s, ACME, "ann@example.com").await;
    let mut groups = Vec::new();
    for i in 0..6 {
        groups.push(make_group(&s, ACME, &format!("Team {i}")).await);
    }
    make_group(&s, GLOBEX, "Team 0").await;
    s.add_members(ACME, &groups[1].id, std::slice::from_ref(&ann.id))
        .await
        .unwrap();
    let listed = assert_group_pages(&s, ACME).await;
    assert_eq!(listed.len(), 6);
    let team1 = listed.iter().find(|g| g.id == groups[1].id).unwrap();
    assert_eq!(
        member_ids(team1),
        vec![ann.id.clone()],
        "pages carry members"
    );
    assert_eq!(assert_group_pages(&s, GLOBEX).await.len(), 1);

    let mut g = s.get_group(ACME, &groups[3].id).await.unwrap().unwrap();
    g.display_name = "Renamed".into();
    s.replace_group(ACME, g, None).await.unwrap();
    s.delete_group(ACME, &groups[0].id).await.unwrap();
    let listed = assert_group_pages(&s, ACME).await;
    assert_eq!(listed.len(), 5);
    let renamed = listed.iter().find(|g| g.id == groups[3].id).unwrap();
    assert_eq!(renamed.display_name, "Renamed");

    // Tombstoning a member changes membership, not the group count.
    s.tombstone_user(ACME, &ann.id).await.unwrap();
    assert_eq!(assert_group_pages(&s, ACME).await.len(), 5);
    let again = make_group(&s, ACME, "Team 0").await;
    let listed = assert_group_pages(&s, ACME).await;
    assert_eq!(listed.len(), 6);
    assert!(listed.iter().any(|g| g.id == again.id));
    assert_eq!(s.count_groups(GLOBEX).await.unwrap(), 1);
}

async fn pages_past_the_end_and_empty_tenants(s: Arc<dyn Backend>) {
    make_user(&s, ACME, "only@example.com").await;
    make_group(&s, ACME, "Only").await;
    for offset in [1, 2, 1_000_000, usize::MAX / 2, usize::MAX] {
        let p = s.users_page(ACME, offset, 100).await.unwrap();
        assert_eq!((p.total, p.items.len()), (1, 0), "offset {offset}");
        let p = s.groups_page(ACME, offset, usize::MAX).await.unwrap();
        assert_eq!((p.total, p.items.len()), (1, 0), "offset {offset}");
    }
    assert_eq!(
        s.users_page(ACME, 0, usize::MAX).await.unwrap().items.len(),
        1
    );
    let empty = s.users_page("nobody", 0, 10).await.unwrap();
    assert_eq!((empty.total, empty.items.len()), (0, 0));
    let empty = s.groups_page("nobody", 0, 10).await.unwrap();
    assert_eq!((empty.total, empty.items.len()), (0, 0));
    assert_eq!(s.count_users("nobody").await.unwrap(), 0);
    assert_eq!(s.count_groups("nobody").await.unwrap(), 0);
}

/// A database written before the order and count tables existed: opening
/// it builds them once from the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_builds_missing_order_and_count_tables_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (want_users, want_groups) = {
        let s: Arc<dyn Backend> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(make_user(&s, ACME, &format!("old{i}@example.com")).await.id);
        }
        make_user(&s, GLOBEX, "other@example.com").await;
        s.tombstone_user(ACME, &ids[1]).await.unwrap();
        make_group(&s, ACME, "Old Group").await;
        (
            s.list_users(ACME).await.unwrap(),
            s.list_groups(ACME).await.unwrap(),
        )
    };
    {
        // Back to the previous layout: no order, count or schema tables.
        let db = redb::Database::create(dir.path().join(portcullis::store::embedded::FILE_NAME))
            .unwrap();
        let txn = db.begin_write().unwrap();
        for name in [
            "dir_user_order",
            "dir_group_order",
            "dir_counts",
            "dir_schema",
        ] {
            let def: redb::TableDefinition<(), ()> = redb::TableDefinition::new(name);
            assert!(txn.delete_table(def).unwrap(), "{name} existed");
        }
        txn.commit().unwrap();
    }
    let s: Arc<dyn Backend> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    assert_eq!(assert_user_pages(&s, ACME).await, want_users);
    assert_eq!(want_users.len(), 4);
    assert_eq!(assert_user_pages(&s, GLOBEX).await.len(), 1);
    assert_eq!(assert_group_pages(&s, ACME).await, want_groups);
    // Kept up from there on.
    make_user(&s, ACME, "new@example.com").await;
    assert_eq!(assert_user_pages(&s, ACME).await.len(), 5);
}

/// A database of the first listing version (order and count tables, no
/// buckets): opening it adds the buckets once, and pages read through them
/// agree with the full listing from there on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_adds_missing_listing_buckets_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let want = {
        let s: Arc<dyn Backend> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        for i in 0..7 {
            make_user(&s, ACME, &format!("v1-{i}@example.com")).await;
        }
        make_group(&s, ACME, "V1 Group").await;
        s.list_users(ACME).await.unwrap()
    };
    {
        let db = redb::Database::create(dir.path().join(portcullis::store::embedded::FILE_NAME))
            .unwrap();
        let txn = db.begin_write().unwrap();
        let buckets: redb::TableDefinition<(), ()> =
            redb::TableDefinition::new("dir_order_buckets");
        assert!(txn.delete_table(buckets).unwrap(), "buckets existed");
        let schema: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("dir_schema");
        txn.open_table(schema)
            .unwrap()
            .insert("listing", 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let s: Arc<dyn Backend> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    assert_eq!(assert_user_pages(&s, ACME).await, want);
    assert_eq!(assert_group_pages(&s, ACME).await.len(), 1);
    make_user(&s, ACME, "v2@example.com").await;
    assert_eq!(assert_user_pages(&s, ACME).await.len(), 8);
}
