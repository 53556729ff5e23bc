//! Schema migrations: each service in its own schema, safe when replicas start together.

use printyard_tests::{Farm, TestEnv, spawn_archive};

#[tokio::test]
async fn replicas_starting_together_apply_each_migration_once() {
    let env = TestEnv::new().await;

    let (a, b, c) = tokio::join!(
        spawn_archive(&env),
        spawn_archive(&env),
        spawn_archive(&env)
    );

    let pool = env.pool().await;
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM archive._sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations/archive"
    ))
    .unwrap()
    .filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "sql")
    })
    .count();
    assert_eq!(applied.len(), files, "{applied:?}");
    assert!(applied.iter().all(|(_, ok)| *ok));
    for service in [a, b, c] {
        service.stop().await;
    }
}

#[tokio::test]
async fn every_central_service_has_its_own_schema_and_history_and_nothing_in_public() {
    let env = TestEnv::new().await;
    let _farm = Farm::start(&env).await;
    let pool = env.pool().await;

    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema FROM information_schema.tables
          WHERE table_name = '_sqlx_migrations' ORDER BY table_schema",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        schemas,
        ["api", "archive", "filament", "notifier", "queue", "stats"]
    );

    let in_public: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(in_public, 0, "no service writes to the public schema");
}
