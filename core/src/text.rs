//! Quoting what a user gave in an error without echoing all of it: a 50 MB field costs one line.

/// Characters of a value an error quotes.
pub const QUOTED_CHARS: usize = 32;

/// The first [`QUOTED_CHARS`] characters of `text`.
pub fn prefix(text: &str) -> &str {
    text.char_indices().nth(QUOTED_CHARS).map_or(text, |(end, _)| &text[..end])
}

/// `text` quoted for an error message: whole when short, else its prefix, an ellipsis and its
/// length (`"1.10001xxxxxxxxxxxxxxxxxxxxxxxxxx"… (52428800 bytes)`).
pub fn quote(text: &str) -> String {
    let shown = prefix(text);
    if shown.len() == text.len() { format!("{text:?}") } else { format!("{shown:?}… ({} bytes)", text.len()) }
}

/// Query parameters whose values are secrets (InfluxDB's `p`, and the usual names).
const SECRET_PARAMETERS: [&str; 7] = ["p", "password", "pass", "pwd", "token", "secret", "key"];

/// A URL as it may be shown in a log, an error, a notice or a metric: a password in its user
/// part and secret query parameters become `***` (`postgres://mtml:***@db/mtml`,
/// `http://influx:8086?u=mtml&p=***`).
pub fn redact_url(url: &str) -> String {
    let (head, query) = url.split_once('?').map_or((url, None), |(h, q)| (h, Some(q)));
    let mut shown = match head.find("://") {
        Some(scheme) => {
            let rest = &head[scheme + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => {
                    let user = rest[..at].split_once(':').map_or(&rest[..at], |(user, _)| user);
                    let masked = if rest[..at].contains(':') { format!("{user}:***") } else { user.to_owned() };
                    format!("{}{masked}{}", &head[..scheme + 3], &rest[at..])
                }
                None => head.to_owned(),
            }
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&parameters.join("&"));
    }
    shown
}

/// UTC epoch milliseconds as people read them: `2014-05-05 06:00:00.123 UTC`.
pub fn utc(ms: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return format!("{ms} ms since 1970");
    };
    let (year, month, day) = (at.year(), u8::from(at.month()), at.day());
    let (hour, minute, second, milli) = (at.hour(), at.minute(), at.second(), at.millisecond());
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{milli:03} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_masked() {
        assert_eq!(redact_url("postgres://mtml:secret@db:5432/mtml"), "postgres://mtml:***@db:5432/mtml");
        assert_eq!(redact_url("postgres://mtml:p@ss@db/mtml"), "postgres://mtml:***@db/mtml", "an @ in the password");
        assert_eq!(redact_url("postgres://mtml@db/mtml"), "postgres://mtml@db/mtml");
        assert_eq!(redact_url("redis://:hunter2hunter2@cache:6379/0"), "redis://:***@cache:6379/0");
        assert_eq!(redact_url("http://influx:8086?db=x&u=mtml&p=hunter2"), "http://influx:8086?db=x&u=mtml&p=***");
        assert_eq!(redact_url("sqlite://journal.db?mode=rwc"), "sqlite://journal.db?mode=rwc");
        assert_eq!(redact_url("http://127.0.0.1:50051/a@b"), "http://127.0.0.1:50051/a@b", "an @ in the path is not a user");
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(1_399_270_000_123), "2014-05-05 06:06:40.123 UTC");
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
    }

    #[test]
    fn long_values_are_cut_and_say_how_long_they_were() {
        assert_eq!(quote("1.1x"), "\"1.1x\"");
        let long = "9".repeat(50 << 20);
        let quoted = quote(&long);
        assert_eq!(quoted, format!("\"{}\"… (52428800 bytes)", "9".repeat(QUOTED_CHARS)));
        assert_eq!(prefix("ééé"), "ééé", "characters, not bytes");
        assert_eq!(prefix(&"é".repeat(40)).chars().count(), QUOTED_CHARS);
    }
}
