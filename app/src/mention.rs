//! Mentions: `@name` in a message's text names a person by their display name.
//!
//! One rule for both sides: the server counts a reader's mentions in the unread messages it
//! reports, the browser highlights and counts the ones that arrive live, and the two must
//! agree. Display names may hold spaces ("Ana Lima"), so a mention is `@` followed by the
//! whole name, in any letter case, and then anything that cannot continue a name (a space,
//! punctuation, the end). `@everyone`-style broadcasts are deliberately not a thing yet.

/// Whether `content` mentions the person called `name`.
pub fn mentions(content: &str, name: &str) -> bool {
    mention_spans(content, name).next().is_some()
}

/// The byte ranges of `content` that mention `name` (each starts at its `@`).
pub fn mention_spans<'a>(
    content: &'a str,
    name: &'a str,
) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let name = name.trim();
    content.match_indices('@').filter_map(move |(at, _)| {
        if name.is_empty() {
            return None;
        }
        // `ana@example.org` is an address, not a mention.
        let before = content[..at].chars().next_back();
        if before.is_some_and(continues_name) {
            return None;
        }
        let rest = &content[at + 1..];
        let end = prefix_len_ignoring_case(rest, name)?;
        let after = rest[end..].chars().next();
        (!after.is_some_and(continues_name)).then_some(at..at + 1 + end)
    })
}

/// The partial mention being typed at the end of `before_caret`: the text after its `@`,
/// when the `@` starts a word (for completing names in the composer).
pub fn typing_mention(before_caret: &str) -> Option<&str> {
    let at = before_caret.rfind('@')?;
    let before = before_caret[..at].chars().next_back();
    if before.is_some_and(continues_name) {
        return None;
    }
    let partial = &before_caret[at + 1..];
    // A completed name may hold one space ("Ana Lima"); a line break or two spaces end it.
    let plausible = partial.chars().count() <= 32
        && !partial.contains('\n')
        && !partial.contains("  ")
        && !partial.starts_with(' ');
    plausible.then_some(partial)
}

/// Whether a name starts with what was typed after `@` (for completion), in any case.
pub fn name_matches(name: &str, partial: &str) -> bool {
    prefix_len_ignoring_case(name, partial).is_some()
}

fn continues_name(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// If `text` starts with `prefix` in any letter case, how many bytes of `text` that is.
fn prefix_len_ignoring_case(text: &str, prefix: &str) -> Option<usize> {
    let mut rest = text.char_indices();
    for wanted in prefix.chars() {
        let (_, got) = rest.next()?;
        if !got.to_lowercase().eq(wanted.to_lowercase()) {
            return None;
        }
    }
    Some(rest.next().map_or(text.len(), |(index, _)| index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_is_the_whole_name_after_an_at_sign_in_any_case() {
        assert!(mentions("hi @ana", "Ana"));
        assert!(mentions("@ANA, look", "Ana"));
        assert!(mentions("ping @Ana Lima!", "Ana Lima"));
        assert!(mentions("@Zoë?", "zoë"));
        assert!(!mentions("hi @anabel", "Ana"));
        assert!(!mentions("mail ana@example.org", "example"));
        assert!(!mentions("hi ana", "Ana"));
        assert!(!mentions("hi @", ""));
        assert_eq!(
            mention_spans("@ana and @Ana.", "ana").collect::<Vec<_>>(),
            vec![0..4, 9..13]
        );
    }

    #[test]
    fn the_partial_mention_under_the_caret_is_found() {
        assert_eq!(typing_mention("hello @an"), Some("an"));
        assert_eq!(typing_mention("@"), Some(""));
        assert_eq!(typing_mention("@Ana L"), Some("Ana L"));
        assert_eq!(typing_mention("mail ana@ex"), None);
        assert_eq!(typing_mention("@ana\nhi"), None);
        assert_eq!(typing_mention("no mention"), None);
        assert!(name_matches("Ana Lima", "ana l"));
        assert!(!name_matches("Ana", "anab"));
    }
}
