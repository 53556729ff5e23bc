//! `/users` and `/roles` (admin): people and what their roles let them do and reach. Every
//! change that can narrow what someone may do (disabling, deleting, a new role or scope, a
//! changed role) takes effect on every api replica before the answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::auth::access::{Caller, Permission};
use crate::auth::credential::Actor;
use crate::auth::key_cache::{EVERYTHING, revoke_everywhere};
use crate::auth::scope::Scope;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::people::passwords::{self, Password};
use crate::people::roles::{self, DeleteRefused, Role, RoleSpec};
use crate::people::sessions;
use crate::people::users::{self, NewUser, Refused, User, UserChange};
use crate::state::AppState;

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ValidationError, detail)
}

fn refused(reason: Refused, role: &str) -> ApiError {
    match reason {
        Refused::UsernameTaken => ApiError::new(ErrorCode::Conflict, "That username is taken"),
        Refused::UnknownRole => invalid(format!("Invalid field `role`: no role named {role:?}")),
    }
}

fn check_username(username: &str) -> Result<String, ApiError> {
    let trimmed = username.trim();
    let length = trimmed.chars().count();
    if !(1..=100).contains(&length) || trimmed.chars().any(char::is_control) {
        return Err(invalid(
            "Invalid field `username`: 1 to 100 characters, no control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !email.chars().any(char::is_whitespace)
        });
    if !valid {
        return Err(invalid(
            "Invalid field `email`: an address like name@example.com",
        ));
    }
    Ok(email.to_owned())
}

async fn hash_password(password: Password) -> Result<String, ApiError> {
    if let Some(problem) = password.problem() {
        return Err(invalid(problem));
    }
    passwords::hash(password).await.map_err(|err| {
        tracing::error!(error = %err, "password hashing failed");
        ApiError::new(ErrorCode::InternalError, "Internal server error")
    })
}

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub username: String,
    /// At least 12 characters; absent: the user signs in only through single sign-on.
    #[schema(value_type = Option<String>, format = Password, min_length = 12, max_length = 1000)]
    pub password: Option<Password>,
    /// A role's name (`viewer`, `operator`, `manager`, `admin`, or one of the farm's).
    pub role: String,
    pub email: Option<String>,
    /// Sites the user is limited to.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Printers the user is limited to.
    #[serde(default)]
    pub printer_ids: Vec<i64>,
}

/// A change to a user; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// `null` removes it.
    #[serde(default, deserialize_with = "printyard_contracts::archive::present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[schema(value_type = Option<String>, format = Password, min_length = 12, max_length = 1000)]
    pub password: Option<Password>,
    pub role: Option<String>,
    pub sites: Option<Vec<String>>,
    pub printer_ids: Option<Vec<i64>>,
    /// `false` ends every session of the user at once and refuses sign-in.
    pub enabled: Option<bool>,
}

#[utoipa::path(
    get, path = "/users", operation_id = "listUsers", tag = "people",
    responses(
        (status = 200, description = "Every user, by name, never with a password", body = Vec<User>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(users::list(&state.db).await?))
}

#[utoipa::path(
    post, path = "/users", operation_id = "createUser", tag = "people",
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "The username is taken", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let username = check_username(&request.username)?;
    let email = request.email.as_deref().map(check_email).transpose()?;
    let scope = Scope {
        sites: request.sites,
        printer_ids: request.printer_ids,
    }
    .validated()?;
    let password_hash = match request.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let user = users::create(
        &state.db,
        NewUser {
            username: &username,
            email: email.as_deref(),
            password_hash,
            role: &request.role,
            sites: &scope.sites,
            printer_ids: &scope.printer_ids,
        },
    )
    .await?
    .map_err(|reason| refused(reason, &request.role))?;
    tracing::info!(user_id = user.id, role = %user.role, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(
    get, path = "/users/{id}", operation_id = "getUser", tag = "people",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, body = User),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<User>, ApiError> {
    users::get(&state.db, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("User {id} not found")))
}

fn is_self(caller: &Caller, id: i64) -> bool {
    matches!(caller.actor, Actor::User { id: me, .. } if me == id)
}

#[utoipa::path(
    patch, path = "/users/{id}", operation_id = "updateUser", tag = "people",
    params(("id" = i64, Path, description = "The user's id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "Changed; on every replica before this answer", body = User),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "An administrator cannot disable or demote themselves", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<User>, ApiError> {
    if is_self(&caller, id)
        && (patch.enabled == Some(false) || patch.role.as_deref().is_some_and(|r| r != "admin"))
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "You cannot disable or demote yourself; ask another administrator",
        ));
    }
    let email = match patch.email {
        Some(Some(email)) => Some(Some(check_email(&email)?)),
        Some(None) => Some(None),
        None => None,
    };
    let scope = match (patch.sites, patch.printer_ids) {
        (None, None) => None,
        (sites, ids) => Some((sites, ids)),
    };
    let (sites, printer_ids) = match scope {
        Some((sites, ids)) => {
            let checked = Scope {
                sites: sites.clone().unwrap_or_default(),
                printer_ids: ids.clone().unwrap_or_default(),
            }
            .validated()?;
            (
                sites.map(|_| checked.sites.clone()),
                ids.map(|_| checked.printer_ids.clone()),
            )
        }
        None => (None, None),
    };
    let password_hash = match patch.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let role = patch.role.clone().unwrap_or_default();
    let disabling = patch.enabled == Some(false);
    let user = users::update(
        &state.db,
        id,
        UserChange {
            email,
            password_hash,
            role: patch.role,
            sites,
            printer_ids,
            enabled: patch.enabled,
        },
    )
    .await?
    .map_err(|reason| refused(reason, &role))?
    .ok_or_else(|| ApiError::not_found(format!("User {id} not found")))?;
    if disabling {
        let ended = sessions::revoke_user(&state.db, id).await?;
        tracing::info!(
            user_id = id,
            sessions = ended,
            "user disabled; sessions ended"
        );
    }
    // Role, scope or standing may have changed: every replica reads sessions afresh.
    revoke_everywhere(&state, EVERYTHING).await;
    Ok(Json(user))
}

/// The answer to `DELETE /users/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserDeleted {
    pub id: i64,
    pub deleted: bool,
}

/// The answer to `DELETE /roles/{name}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleDeleted {
    pub name: String,
    pub deleted: bool,
}

#[utoipa::path(
    delete, path = "/users/{id}", operation_id = "deleteUser", tag = "people",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Deleted, their sessions ended everywhere", body = UserDeleted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "An administrator cannot delete themselves", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<UserDeleted>, ApiError> {
    if is_self(&caller, id) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "You cannot delete yourself; ask another administrator",
        ));
    }
    if !users::delete(&state.db, id).await? {
        return Err(ApiError::not_found(format!("User {id} not found")));
    }
    revoke_everywhere(&state, EVERYTHING).await;
    tracing::info!(user_id = id, "user deleted");
    Ok(Json(UserDeleted { id, deleted: true }))
}

/// `DELETE /users/{id}/sessions` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionsEnded {
    /// Sessions that were live.
    pub ended: u64,
}

#[utoipa::path(
    delete, path = "/users/{id}/sessions", operation_id = "endUserSessions", tag = "people",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Every session of the user ended, on every replica; the \
            user may sign in again", body = SessionsEnded),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn end_sessions(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SessionsEnded>, ApiError> {
    if users::get(&state.db, id).await?.is_none() {
        return Err(ApiError::not_found(format!("User {id} not found")));
    }
    let ended = sessions::revoke_user(&state.db, id).await?;
    revoke_everywhere(&state, EVERYTHING).await;
    tracing::info!(
        user_id = id,
        sessions = ended,
        "sessions ended by an administrator"
    );
    Ok(Json(SessionsEnded { ended }))
}

/// A role to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// Lower-case letters, digits, `-` and `_`, starting with a letter; 1 to 40.
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,39}$")]
    pub name: String,
    #[serde(flatten)]
    pub spec: RoleBody,
}

/// What a role is: its permissions and scope.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RoleBody {
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: String,
    #[schema(min_items = 1)]
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub sites: Vec<String>,
    #[serde(default)]
    pub printer_ids: Vec<i64>,
}

impl RoleBody {
    fn spec(self) -> Result<RoleSpec, ApiError> {
        if self.permissions.is_empty() {
            return Err(invalid(
                "Invalid field `permissions`: at least one permission is required",
            ));
        }
        if self.description.chars().count() > 500 {
            return Err(invalid(
                "Invalid field `description`: at most 500 characters",
            ));
        }
        let scope = Scope {
            sites: self.sites,
            printer_ids: self.printer_ids,
        }
        .validated()?;
        let mut permissions: Vec<String> = self
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        permissions.sort();
        permissions.dedup();
        Ok(RoleSpec {
            description: self.description,
            permissions,
            sites: scope.sites,
            printer_ids: scope.printer_ids,
        })
    }
}

#[utoipa::path(
    get, path = "/roles", operation_id = "listRoles", tag = "people",
    responses(
        (status = 200, description = "Built-in roles first, then the farm's", body = Vec<Role>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_roles(State(state): State<AppState>) -> Result<Json<Vec<Role>>, ApiError> {
    Ok(Json(roles::list(&state.db).await?))
}

#[utoipa::path(
    post, path = "/roles", operation_id = "createRole", tag = "people",
    request_body = NewRole,
    responses(
        (status = 201, description = "Created", body = Role),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "A role of that name exists", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_role(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewRole>,
) -> Result<(StatusCode, Json<Role>), ApiError> {
    if !roles::valid_name(&request.name) {
        return Err(invalid(
            "Invalid field `name`: lower-case letters, digits, - and _, starting with a letter, at most 40",
        ));
    }
    let spec = request.spec.spec()?;
    let role = roles::create(&state.db, &request.name, &spec)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Conflict, "A role of that name exists"))?;
    Ok((StatusCode::CREATED, Json(role)))
}

#[utoipa::path(
    put, path = "/roles/{name}", operation_id = "replaceRole", tag = "people",
    params(("name" = String, Path, description = "The role's name")),
    request_body = RoleBody,
    responses(
        (status = 200, description = "Replaced; on every replica before this answer", body = Role),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Built-in roles cannot be changed", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn replace_role(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Json<Role>, ApiError> {
    let spec = body.spec()?;
    let Some(existing) = roles::get(&state.db, &name).await? else {
        return Err(ApiError::not_found(format!("Role {name:?} not found")));
    };
    if existing.builtin {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "Built-in roles cannot be changed; create a role of your own",
        ));
    }
    let role = roles::update(&state.db, &name, &spec)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Role {name:?} not found")))?;
    revoke_everywhere(&state, EVERYTHING).await;
    Ok(Json(role))
}

#[utoipa::path(
    delete, path = "/roles/{name}", operation_id = "deleteRole", tag = "people",
    params(("name" = String, Path, description = "The role's name")),
    responses(
        (status = 200, description = "Deleted", body = RoleDeleted),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Built in, or users still have it", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_role(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RoleDeleted>, ApiError> {
    match roles::delete(&state.db, &name).await? {
        Ok(()) => Ok(Json(RoleDeleted {
            name,
            deleted: true,
        })),
        Err(DeleteRefused::NotFound) => {
            Err(ApiError::not_found(format!("Role {name:?} not found")))
        }
        Err(DeleteRefused::Builtin) => Err(ApiError::new(
            ErrorCode::Conflict,
            "Built-in roles cannot be deleted",
        )),
        Err(DeleteRefused::InUse(users)) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("{users} user(s) have this role; give them another first"),
        )),
    }
}
