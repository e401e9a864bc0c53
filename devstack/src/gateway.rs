//! API Gateway's JWT authorizer in front of `POST /softphone/token`, as HTTP APIs run it.
//!
//! moto has no API Gateway v2, and cargo-lambda's function URLs carry no authorizer, so the
//! local stack plays both parts here, as AWS documents them ("Control access to HTTP APIs
//! with JWT authorizers", developer guide):
//! - the token comes from the `Authorization` header, alone or after `Bearer `;
//! - only RSA signatures are accepted, by the key in the issuer's JWKS whose `kid` the
//!   header names; `iss` must be the configured issuer; `aud` (or `client_id` when there is
//!   no `aud`) one of the configured audiences; `exp` in the future, `nbf` and `iat` past;
//! - any failure answers `401 {"message":"Unauthorized"}` with a `www-authenticate` header
//!   saying why ("HTTP API troubleshooting: JWT");
//! - a route other than `POST /softphone/token` answers `404 {"message":"Not Found"}`;
//! - on success the function is invoked with a payload-2.0 event whose
//!   `requestContext.authorizer.jwt.claims` holds each claim as a string, as HTTP APIs pass
//!   them (arrays as `[a b]`).
//!
//! The issuer is local too: [`LocalIssuer`] holds an RSA key made at start, and mints the
//! bearer tokens a softphone's identity provider would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_lambda::primitives::Blob;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use serde_json::{Value, json};

/// The local identity provider's issuer URL and the audience the stack's authorizer accepts.
pub const LOCAL_ISSUER: &str = "https://issuer.voicehooks.test/";
pub const LOCAL_AUDIENCE: &str = "voicehooks-softphone";
const KEY_ID: &str = "local-1";

/// An OIDC provider's signing key, made fresh for each stack.
pub struct LocalIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl LocalIssuer {
    pub fn new() -> anyhow::Result<Self> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)?;
        let private = key.to_pkcs1_der()?;
        let public = key.to_public_key().to_pkcs1_der()?;
        Ok(Self {
            encoding: EncodingKey::from_rsa_der(private.as_bytes()),
            decoding: DecodingKey::from_rsa_der(public.as_bytes()),
        })
    }

    /// A bearer token for `subject`, valid for an hour, with `extra` claims on top (which may
    /// override the defaults: a test's wrong audience or past expiry).
    pub fn bearer(&self, subject: &str, extra: Value) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "token_use": "id",
        });
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KEY_ID.into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("an RSA key signs any claims")
    }

    /// The claims of a token the authorizer accepts, or why it does not.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<serde_json::Map<String, Value>, String> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("no Authorization header")?;
        let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("token is malformed: {e}"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
        ) {
            return Err(format!("unsupported signing algorithm {:?}", header.alg));
        }
        if header.kid.as_deref() != Some(KEY_ID) {
            return Err("no key in the issuer's JWKS has the token's kid".into());
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[LOCAL_ISSUER]);
        // aud is checked below: API Gateway falls back to client_id when aud is absent.
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = 0;
        validation.required_spec_claims = ["exp", "iss"].into_iter().map(String::from).collect();
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
            token,
            &self.decoding,
            &validation,
        )
        .map_err(|e| format!("the token is not valid: {e}"))?;
        let claims = data.claims;
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == LOCAL_AUDIENCE,
            Some(Value::Array(auds)) => auds.iter().any(|a| a == LOCAL_AUDIENCE),
            Some(_) => false,
            None => claims.get("client_id").and_then(Value::as_str) == Some(LOCAL_AUDIENCE),
        };
        if !audience_ok {
            return Err("the token does not have a valid audience".into());
        }
        if claims
            .get("iat")
            .and_then(Value::as_u64)
            .is_some_and(|iat| iat > unix_now())
        {
            return Err("the token was issued in the future".into());
        }
        Ok(claims)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A claim as HTTP APIs hand it to the integration: strings as they are, arrays as
/// `[a b]`, anything else as its JSON text.
fn claim_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(claim_string).collect();
            format!("[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

struct Route {
    issuer: Arc<LocalIssuer>,
    lambda: aws_sdk_lambda::Client,
    function: String,
    path: String,
}

/// The route, served on a loopback port until dropped.
pub struct JwtRoute {
    pub addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl JwtRoute {
    /// Serves `POST path` for `function` (invoked through the Lambda API at
    /// `lambda_endpoint`), behind `issuer`'s authorizer.
    pub async fn start(
        sdk: &aws_config::SdkConfig,
        lambda_endpoint: &str,
        function: &str,
        path: &str,
        issuer: Arc<LocalIssuer>,
    ) -> anyhow::Result<Self> {
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(sdk)
                .endpoint_url(lambda_endpoint)
                .build(),
        );
        let state = Arc::new(Route {
            issuer,
            lambda,
            function: function.to_owned(),
            path: path.to_owned(),
        });
        let app = axum::Router::new().fallback(handle).with_state(state);
        let (addr, stop) = crate::task::serve(app).await?;
        Ok(Self { addr, _stop: stop })
    }

    /// The URL a softphone posts to.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "message": text }).to_string(),
    )
        .into_response()
}

async fn handle(
    State(route): State<Arc<Route>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST || uri.path() != route.path {
        return message(StatusCode::NOT_FOUND, "Not Found");
    }
    let claims = match route.issuer.authorize(&headers) {
        Ok(claims) => claims,
        Err(why) => {
            let mut response = message(StatusCode::UNAUTHORIZED, "Unauthorized");
            let challenge =
                format!("Bearer scope=\"\" error=\"invalid_token\" error_description=\"{why}\"");
            if let Ok(value) = challenge.parse() {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            return response;
        }
    };
    let event = event(&route, &uri, &headers, &body, &claims);
    match route
        .lambda
        .invoke()
        .function_name(&route.function)
        .payload(Blob::new(event.to_string()))
        .send()
        .await
    {
        Ok(output) if output.function_error().is_none() => output
            .payload()
            .and_then(|p| serde_json::from_slice::<Value>(p.as_ref()).ok())
            .map_or_else(
                || message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                |answer| integration_response(&answer),
            ),
        // A function error or an invoke failure is API Gateway's 500.
        _ => message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

/// The payload-2.0 event API Gateway would send.
fn event(
    route: &Route,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    claims: &serde_json::Map<String, Value>,
) -> Value {
    let mut joined: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        let value = value.to_str().unwrap_or_default();
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    let claims: HashMap<&String, String> =
        claims.iter().map(|(k, v)| (k, claim_string(v))).collect();
    let now = unix_now();
    let route_key = format!("POST {}", route.path);
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or_default(),
        "headers": joined,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "authorizer": { "jwt": { "claims": claims, "scopes": null } },
            "domainName": "local",
            "domainPrefix": "local",
            "http": {
                "method": "POST",
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": joined.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": format!("local-{now}-{:08x}", rand::random::<u32>()),
            "routeKey": route_key,
            "stage": "$default",
            "time": "",
            "timeEpoch": now * 1000,
        },
        "body": String::from_utf8_lossy(body),
        "isBase64Encoded": false,
    })
}

/// The function's answer as API Gateway returns it to the client.
fn integration_response(answer: &Value) -> Response {
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut body = answer["body"]
        .as_str()
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    if answer["isBase64Encoded"].as_bool() == Some(true) {
        use base64::Engine;
        body = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .unwrap_or_default();
    }
    let mut response = (status, body).into_response();
    if let Some(headers) = answer["headers"].as_object() {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                name.parse::<header::HeaderName>(),
                value.as_str().map(str::parse),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn accepts_its_own_tokens_and_refuses_as_api_gateway_does() {
        let issuer = LocalIssuer::new().unwrap();
        let claims = issuer
            .authorize(&bearer(&issuer.bearer("alice", json!({}))))
            .unwrap();
        assert_eq!(claims["sub"], "alice");
        let refused = |extra: Value| {
            issuer
                .authorize(&bearer(&issuer.bearer("alice", extra)))
                .unwrap_err()
        };
        assert!(refused(json!({"aud": "someone-else"})).contains("valid audience"));
        assert!(refused(json!({"iss": "https://other.example/"})).contains("not valid"));
        assert!(refused(json!({"exp": 1_000_000_000})).contains("not valid"));
        assert!(refused(json!({"nbf": unix_now() + 600})).contains("not valid"));
        // client_id stands in for aud only when there is no aud.
        let mut no_aud = issuer.bearer("a", json!({"client_id": LOCAL_AUDIENCE}));
        assert!(issuer.authorize(&bearer(&no_aud)).is_ok());
        // Another key's signature.
        let other = LocalIssuer::new().unwrap();
        no_aud = other.bearer("a", json!({}));
        assert!(issuer.authorize(&bearer(&no_aud)).is_err());
        assert!(issuer.authorize(&HeaderMap::new()).is_err());
    }

    #[test]
    fn claims_reach_the_function_as_strings() {
        assert_eq!(claim_string(&json!("alice")), "alice");
        assert_eq!(claim_string(&json!(12)), "12");
        assert_eq!(claim_string(&json!(["a", "b"])), "[a b]");
    }
}
