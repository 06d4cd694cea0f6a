//! [`Glob`]: the `--match` patterns of bulk `vpn user disable|enable|remove`.

/// A shell-style pattern over a whole name: `*` matches any run of characters (also none), `?`
/// any one character, anything else itself (case-sensitive, like names). `*@example.com`,
/// `test-*`, `user?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    /// A pattern from its text.
    pub fn new(pattern: &str) -> Glob {
        Glob(pattern.chars().collect())
    }

    /// Whether `name`, as a whole, matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let p = &self.0;
        // The classic linear matcher: on a mismatch, go back to just after the last `*` and let
        // it swallow one more character.
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < name.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ni));
                    pi += 1;
                }
                Some(&c) if c == '?' || c == name[ni] => {
                    pi += 1;
                    ni += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        pi = sp + 1;
                        ni = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.iter().collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn matches_whole_names() {
        let m = |p: &str, n: &str| Glob::new(p).matches(n);
        assert!(m("*", "") && m("*", "alice") && m("alice", "alice"));
        assert!(!m("alice", "alice2") && !m("alic", "alice") && !m("", "a"));
        assert!(m("*@example.com", "bob@example.com") && !m("*@example.com", "bob@example.org"));
        assert!(m("test-*", "test-1") && m("test-*", "test-") && !m("test-*", "atest-1"));
        assert!(m("user?", "user1") && !m("user?", "user") && !m("user?", "user12"));
        assert!(m("a*b*c", "aXXbYYc") && m("a*b*c", "abc") && !m("a*b*c", "aXXbYY") && m("*a*a", "banana"));
        assert!(m("**x", "x") && !m("Alice", "alice"));
        assert_eq!(Glob::new("t*").to_string(), "t*");
    }
}
