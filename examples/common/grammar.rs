//! The small stochastic grammar the character models (`char_lm`, `char_transformer`) read,
//! and its exact sentence probabilities.
//!
//! Sentences: a subject (`the`/`a` + noun, or `the`/`some` + plural noun), optionally a
//! relative clause (`that` + verb + object), then a verb that agrees in number with the
//! subject across the clause, an object, and `. `. Every choice is uniform, and the grammar
//! is unambiguous, so a sentence's probability is that of its derivation and the entropy
//! rate of the character stream is `H(sentence) / E[characters per sentence]`.

use rand::Rng;

/// The characters of the text; a character's id is its position here.
pub const ALPHABET: &str = " .abcdefghijklmnopqrstuvwxyz";
const NOUNS: [&str; 4] = ["cat", "dog", "bird", "cow"];
const VERBS: [&str; 4] = ["see", "chase", "like", "hear"];

/// Draws choices and adds up their log-probability.
struct Derivation<'a, R: Rng> {
    rng: &'a mut R,
    log_p: f64,
}

impl<R: Rng> Derivation<'_, R> {
    /// One of `options`, uniformly.
    fn pick(&mut self, options: usize) -> usize {
        self.log_p -= (options as f64).ln();
        self.rng.random_range(0..options)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        let yes = self.rng.random::<f64>() < p;
        self.log_p += if yes { p.ln() } else { (1.0 - p).ln() };
        yes
    }

    /// A determiner and a noun; whether it is plural.
    fn noun_phrase(&mut self) -> (String, bool) {
        let plural = self.pick(2) == 1;
        let det = if plural { ["the", "some"][self.pick(2)] } else { ["the", "a"][self.pick(2)] };
        let noun = NOUNS[self.pick(NOUNS.len())];
        (format!("{det} {noun}{}", if plural { "s" } else { "" }), plural)
    }

    /// A verb agreeing with a subject of the given number.
    fn verb(&mut self, plural: bool) -> String {
        let v = VERBS[self.pick(VERBS.len())];
        match (plural, v.ends_with("ch")) {
            (true, _) => v.to_string(),
            (false, true) => format!("{v}es"),
            (false, false) => format!("{v}s"),
        }
    }
}

/// One sentence and the natural log of its probability.
pub fn sentence(rng: &mut impl Rng) -> (String, f64) {
    let mut d = Derivation { rng, log_p: 0.0 };
    let (mut s, plural) = d.noun_phrase();
    // A relative clause one time in three; its verb agrees with the subject too.
    if d.chance(1.0 / 3.0) {
        let verb = d.verb(plural);
        s += &format!(" that {verb} {}", d.noun_phrase().0);
    }
    let verb = d.verb(plural);
    s += &format!(" {verb} {}. ", d.noun_phrase().0);
    (s, d.log_p)
}

/// A stream of `chars` characters of sentences, as ids into `ALPHABET`.
pub fn text(chars: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut ids = Vec::with_capacity(chars + 100);
    while ids.len() < chars {
        ids.extend(sentence(rng).0.chars().map(|c| ALPHABET.find(c).expect("grammar uses the alphabet")));
    }
    ids.truncate(chars);
    ids
}

/// The entropy rate of the text in nats per character, estimated from `samples` sentences.
pub fn entropy_rate(samples: usize, rng: &mut impl Rng) -> f64 {
    let (mut entropy, mut length) = (0.0, 0.0);
    for _ in 0..samples {
        let (s, log_p) = sentence(rng);
        entropy -= log_p;
        length += s.chars().count() as f64;
    }
    entropy / length
}
