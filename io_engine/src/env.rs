//! Reading enum-valued settings from environment variables, with errors that name the variable and list
//! the accepted values.

use std::str::FromStr;

/// A setting read from an environment variable had a value that is not one of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not valid; accepted values: {}", accepted.join(", "))]
pub struct EnvSettingError {
    /// The variable's name.
    pub var: &'static str,
    /// The value found.
    pub value: String,
    /// What would have been accepted.
    pub accepted: Vec<&'static str>,
}

/// Parses `value` (the content of `var`, if set) as a `T`. Unset or empty (after trimming) means `None`.
/// Matching is exact (the kebab-case names), after trimming surrounding white space.
pub fn parse_setting<T>(
    var: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, EnvSettingError>
where
    T: FromStr + strum::VariantNames,
{
    let Some(raw) = value else { return Ok(None) };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    trimmed.parse().map(Some).map_err(|_| EnvSettingError {
        var,
        value: raw.to_owned(),
        accepted: T::VARIANTS.to_vec(),
    })
}

/// Reads `var` from the process environment and parses it with [`parse_setting`]. A value that is not
/// UTF-8 is an error too.
pub fn setting_from_env<T>(var: &'static str) -> Result<Option<T>, EnvSettingError>
where
    T: FromStr + strum::VariantNames,
{
    match std::env::var(var) {
        Ok(v) => parse_setting(var, Some(&v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(EnvSettingError {
            var,
            value: v.to_string_lossy().into_owned(),
            accepted: T::VARIANTS.to_vec(),
        }),
    }
}
