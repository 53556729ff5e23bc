use clap::{Parser, Subcommand};
use printyard_api::auth::Permission;
use printyard_contracts::ServiceName;
use printyard_service::boot::{CommonArgs, boot};

/// The Printyard HTTP API (`/api/v1`).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Print the OpenAPI document (the one served at `/api/v1/openapi.json`) and exit.
    Openapi,
    /// Create an API key and print it on standard output (shown once; only its hash is kept).
    CreateKey {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// A permission: read, write, control or admin (admin implies all). Repeatable.
        #[arg(long = "permission", required = true, value_parser = parse_permission)]
        permissions: Vec<Permission>,
    },
    /// Create a user (or reset an existing one's password) and print the new random password
    /// on standard output (shown once; only its Argon2id hash is kept).
    SetPassword {
        #[arg(long)]
        username: String,
        /// The role of a new user: viewer, operator, manager, admin or one of the farm's.
        #[arg(long, default_value = "admin")]
        role: String,
    },
}

fn parse_permission(s: &str) -> Result<Permission, String> {
    Permission::parse(s)
        .ok_or_else(|| format!("unknown permission {s:?} (read, write, control, admin)"))
}

/// mimalloc: a request's many small allocations cost less than with glibc's allocator (the
/// status read under load: `scripts/bench status_api`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let booted = boot::<printyard_api::Config>(ServiceName::Api, &cli.common)?;
            printyard_api::run(booted.config).await
        }
        Command::Openapi => {
            println!(
                "{}",
                printyard_api::routes::openapi_document().to_pretty_json()?
            );
            Ok(())
        }
        Command::CreateKey { name, permissions } => {
            // No log output here: standard output carries the key alone, for scripts.
            let config = printyard_service::config::load::<printyard_api::Config>(
                cli.common.config.as_deref(),
            )?
            .config;
            let (key, secret) = printyard_api::create_key(&config, &name, &permissions).await?;
            eprintln!(
                "created API key {} ({}) with {}",
                key.id,
                key.prefix,
                key.permissions.join(", ")
            );
            println!("{}", secret.reveal());
            Ok(())
        }
        Command::SetPassword { username, role } => {
            let config = printyard_service::config::load::<printyard_api::Config>(
                cli.common.config.as_deref(),
            )?
            .config;
            let (id, password) =
                printyard_api::set_user_password(&config, &username, &role).await?;
            eprintln!("user {id} ({username}) has a new password");
            println!("{password}");
            Ok(())
        }
    }
}
