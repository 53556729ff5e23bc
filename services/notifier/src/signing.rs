//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the receiver gets
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64
//! HMAC-SHA256 of "id.timestamp.body">`, keyed by the base64 part of a `whsec_` secret, so any
//! Standard Webhooks library verifies Printyard's deliveries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use ring::hmac;

const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The signature header's value for one attempt. `None` if `secret` is not a secret this
/// module made (it is never shown, so that does not happen short of a corrupted row).
pub fn sign(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut context = hmac::Context::with_key(&key);
    context.update(message_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    Some(format!("v1,{}", STANDARD.encode(context.sign().as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_specification_shows() {
        // The example of the specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_random_and_usable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_"));
        assert!(sign(&a, "id", 1, b"{}").is_some());
        assert!(sign("not-a-secret", "id", 1, b"{}").is_none());
    }
}
