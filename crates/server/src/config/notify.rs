//! `[[notify]]`: webhooks told when a request is held for approval and when it is decided. A
//! webhook address may itself be a secret (Slack's incoming webhooks are), so it can come from
//! the environment or a file instead of the config.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// One `[[notify]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The address witness POSTs to (http or https); or `url_env`, or `url_file`.
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    /// `json` (witness's own shape, the default) or `slack` (an incoming webhook's `text`).
    #[serde(default, deserialize_with = "super::parsed")]
    pub format: NotifyFormat,
}

/// The body a webhook gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NotifyFormat {
    /// `{"event", "approval", "link", "text"}`.
    #[default]
    Json,
    /// `{"text"}`, with the link in Slack's `<url|label>` form.
    Slack,
}

/// A `format` that names no notice shape.
#[derive(Debug, thiserror::Error)]
#[error("format {0:?} is unknown; use \"json\" or \"slack\"")]
pub struct UnknownNotifyFormat(String);

impl std::str::FromStr for NotifyFormat {
    type Err = UnknownNotifyFormat;

    fn from_str(s: &str) -> Result<NotifyFormat, UnknownNotifyFormat> {
        match s {
            "json" => Ok(NotifyFormat::Json),
            "slack" => Ok(NotifyFormat::Slack),
            other => Err(UnknownNotifyFormat(other.into())),
        }
    }
}

/// A webhook ready to be called: its address resolved, never logged whole.
#[derive(Clone)]
pub struct NotifyTarget {
    pub url: String,
    pub format: NotifyFormat,
    /// How the log names it: scheme, host and port, never the path (it may be the secret).
    pub name: String,
}

impl NotifyConfig {
    /// The webhook this table names; `n` is its place among the `[[notify]]` tables, from 1.
    pub fn target(&self, path: &Path, n: usize) -> Result<NotifyTarget, ConfigError> {
        let invalid =
            |key: &str, problem: String| ConfigError::Invalid { path: path.to_path_buf(), key: format!("[[notify]] #{n} {key}"), problem };
        let url = match (&self.url, &self.url_env, &self.url_file) {
            (Some(url), None, None) => url.clone(),
            (None, Some(var), None) => {
                std::env::var(var).map_err(|_| invalid("url_env", format!("the environment variable {var} is not set")))?
            }
            (None, None, Some(file)) => std::fs::read_to_string(file)
                .map(|text| text.trim().to_string())
                .map_err(|e| invalid("url_file", format!("cannot read {}: {e}", file.display())))?,
            (None, None, None) => return Err(invalid("url", "say where to send notices: url, url_env or url_file".into())),
            _ => return Err(invalid("url", "give one of url, url_env and url_file".into())),
        };
        let Some((scheme, rest)) = url.split_once("://").filter(|(scheme, _)| matches!(*scheme, "http" | "https")) else {
            return Err(invalid("url", "must be an http:// or https:// address".into()));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.contains('@') {
            return Err(invalid("url", "must name a host, without a user or password in it".into()));
        }
        Ok(NotifyTarget { name: format!("{scheme}://{host}"), url, format: self.format })
    }
}
