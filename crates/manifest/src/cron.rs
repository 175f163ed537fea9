//! Cron schedules for timer-triggered functions (`"timer": {"cron": "*/5 * * * *"}`): the
//! standard five fields (minute hour day-of-month month day-of-week) with Vixie cron
//! semantics, evaluated in UTC.

/// A parsed cron schedule (minute hour day-of-month month day-of-week), in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    doms: u64,
    months: u64,
    dows: u64,
    /// Whether day-of-month / day-of-week begin with `*`: as in Vixie cron, a day then
    /// has to match both fields; when neither does, matching either one is enough.
    dom_star: bool,
    dow_star: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const FIELDS: [Field; 5] = [
    Field::new("minute", 0, 59, &[]),
    Field::new("hour", 0, 23, &[]),
    Field::new("day-of-month", 1, 31, &[]),
    Field::new("month", 1, 12, &MONTHS),
    Field::new("day-of-week", 0, 7, &DAYS),
];

/// How far ahead [`Cron::next_after`] looks before deciding a schedule never fires.
const SEARCH_DAYS: i64 = 8 * 366;

impl Cron {
    /// Parses an expression; the error names the field (e.g. "the hour field \"25\": 25 is outside 0-23")
    /// and what was wrong.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let expr = expr.trim();
        let expr = match expr {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ if expr.starts_with('@') => return Err(format!("unknown macro {expr:?}")),
            _ => expr,
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ));
        }
        let mut masks = [0u64; 5];
        for ((mask, text), field) in masks.iter_mut().zip(&fields).zip(&FIELDS) {
            *mask = field
                .parse(text)
                .map_err(|e| format!("the {} field {text:?}: {e}", field.name))?;
        }
        let [minutes, hours, doms, months, dows] = masks;
        Ok(Cron {
            minutes,
            hours,
            doms,
            months,
            // Sunday is both 0 and 7.
            dows: (dows | dows >> 7) & 0x7f,
            dom_star: fields[2].starts_with('*'),
            dow_star: fields[4].starts_with('*'),
        })
    }

    /// The first fire time strictly after `after_unix_secs`, in Unix seconds (always at second 0 of a
    /// minute); None if it never fires (e.g. "0 0 30 2 *"): the search gives up after ~5 years.
    pub fn next_after(&self, after_unix_secs: u64) -> Option<u64> {
        let first = after_unix_secs / 60 + 1;
        let mut day = i64::try_from(first / 1440).ok()?;
        let mut from = (first % 1440) as u32; // minute of the day to search from
        let last = day + SEARCH_DAYS;
        while day <= last {
            let (y, m, d) = civil_from_days(day);
            if !has(self.months, m) {
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (day, from) = (days_from_civil(y, m, 1), 0);
                continue;
            }
            // 1970-01-01 was a Thursday.
            if self.day_matches(d, (day + 4).rem_euclid(7) as u32) {
                let mut hour_from = from / 60;
                while let Some(h) = next_bit(self.hours, hour_from) {
                    let min_from = if h == from / 60 { from % 60 } else { 0 };
                    if let Some(min) = next_bit(self.minutes, min_from) {
                        let secs = u64::from(h * 3600 + min * 60);
                        return u64::try_from(day).ok()?.checked_mul(86_400)?.checked_add(secs);
                    }
                    hour_from = h + 1;
                }
            }
            (day, from) = (day + 1, 0);
        }
        None
    }

    fn day_matches(&self, dom: u32, dow: u32) -> bool {
        let (dom, dow) = (has(self.doms, dom), has(self.dows, dow));
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

impl Field {
    const fn new(name: &'static str, min: u32, max: u32, names: &'static [&'static str]) -> Field {
        Field { name, min, max, names }
    }

    /// The bitmask of the values a comma-separated list of items selects.
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut mask = 0;
        for item in text.split(',') {
            if item.is_empty() {
                return Err("empty item in the list".into());
            }
            let (base, step) = match item.split_once('/') {
                Some((base, step)) => (base, Some(step)),
                None => (item, None),
            };
            let (lo, hi) = match base.split_once('-') {
                _ if base == "*" => (self.min, self.max),
                Some((a, b)) => (self.value(a)?, self.value(b)?),
                None if step.is_some() => (self.value(base)?, self.max),
                None => (self.value(base)?, self.value(base)?),
            };
            if lo > hi {
                return Err(format!("the range {base:?} runs backwards"));
            }
            let step = match step {
                None => 1,
                Some(s) => match s.parse::<u32>() {
                    Ok(0) => return Err("the step must be at least 1".into()),
                    Ok(n) => n,
                    Err(_) => return Err(format!("the step {s:?} is not a positive number")),
                },
            };
            for v in (lo..=hi).step_by(step as usize) {
                mask |= 1 << v;
            }
        }
        Ok(mask)
    }

    fn value(&self, s: &str) -> Result<u32, String> {
        if s.is_empty() {
            return Err("a value is missing".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            let v = s.parse::<u32>().ok().filter(|v| (self.min..=self.max).contains(v));
            return v.ok_or_else(|| format!("{s} is outside {}-{}", self.min, self.max));
        }
        match (self.names.iter().position(|n| n.eq_ignore_ascii_case(s)), self.names) {
            (Some(i), _) => Ok(self.min + i as u32),
            (None, [first, .., last]) => Err(format!("{s:?} is not a number or a name ({first}..{last})")),
            (None, _) => Err(format!("{s:?} is not a number")),
        }
    }
}

fn has(mask: u64, bit: u32) -> bool {
    mask & (1 << bit) != 0
}

/// The lowest set bit of `mask` at or above `from` (`from` < 64).
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    let rest = mask & (!0u64 << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The day, counted from 1970-01-01, of a (year, month 1-12, day 1-31) date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
    let m = i64::from(m);
    let doy = (153 * if m > 2 { m - 3 } else { m + 9 } + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of "YYYY-MM-DD HH:MM" UTC (`days_from_civil` is checked below).
    fn ts(s: &str) -> u64 {
        let n: Vec<u64> = s.split(['-', ' ', ':']).map(|p| p.parse().unwrap()).collect();
        days_from_civil(n[0] as i64, n[1] as u32, n[2] as u32) as u64 * 86_400 + n[3] * 3600 + n[4] * 60
    }

    fn show(t: u64) -> String {
        assert_eq!(t % 60, 0, "fire times are at second 0");
        let (y, m, d) = civil_from_days((t / 86_400) as i64);
        format!("{y}-{m:02}-{d:02} {:02}:{:02}", t % 86_400 / 3600, t % 3600 / 60)
    }

    /// Checks the first fire times of `expr` after `from`.
    fn check<S: AsRef<str>>(expr: &str, from: &str, want: &[S]) {
        let cron = Cron::parse(expr).unwrap();
        let got: Vec<String> = std::iter::successors(cron.next_after(ts(from)), |&t| cron.next_after(t))
            .take(want.len())
            .map(show)
            .collect();
        assert_eq!(
            got,
            want.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
            "{expr:?} after {from}"
        );
    }

    #[test]
    fn civil_dates_match_known_timestamps() {
        // Checked with `date -u -d @N`.
        for (secs, ymd) in [
            (0, (1970, 1, 1)),
            (951_868_800, (2000, 3, 1)),
            (1_709_164_800, (2024, 2, 29)),
            (1_795_824_000, (2026, 11, 28)),
            (1_798_761_600, (2027, 1, 1)),
            (1_835_395_200, (2028, 2, 29)),
        ] {
            assert_eq!(civil_from_days(secs / 86_400), ymd);
            assert_eq!(days_from_civil(ymd.0, ymd.1, ymd.2), secs / 86_400);
        }
        for day in -800_000..800_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(ts("2026-11-28 00:00"), 1_795_824_000);
        assert_eq!(show(1_795_824_000 + 3600 + 120), "2026-11-28 01:02");
    }

    #[test]
    fn strictly_after() {
        let every = Cron::parse("* * * * *").unwrap();
        let t = 1_795_824_000; // 2026-11-28 00:00
        for (after, next) in [(t - 1, t), (t, t + 60), (t + 1, t + 60), (t + 59, t + 60)] {
            assert_eq!(every.next_after(after), Some(next), "{after}");
        }
        assert_eq!(every.next_after(u64::MAX), None);
        check(
            "0 * * * *",
            "2026-11-28 10:00",
            &["2026-11-28 11:00", "2026-11-28 12:00"],
        );
        check("30 9 * * *", "2026-11-28 09:30", &["2026-11-29 09:30"]);
    }

    #[test]
    fn steps_ranges_and_lists() {
        check(
            "*/15 * * * *",
            "2026-11-28 10:07",
            &["2026-11-28 10:15", "2026-11-28 10:30"],
        );
        check("*/15 * * * *", "2026-11-28 10:45", &["2026-11-28 11:00"]);
        check("*/5 * * * *", "2026-12-31 23:58", &["2027-01-01 00:00"]);
        let want = ["13:10", "13:20", "13:30", "17:10", "17:20"].map(|t| format!("2026-11-28 {t}"));
        check("10-30/10 9-17/4 * * *", "2026-11-28 09:30", &want);
        check("10-30/10 9-17/4 * * *", "2026-11-28 17:30", &["2026-11-29 09:10"]);
        let want = ["08:05", "08:10", "08:11", "08:12", "08:50", "08:55", "20:05"].map(|t| format!("2026-11-28 {t}"));
        check("5,10-12,50/5 8,20 * * *", "2026-11-28 08:00", &want);
        assert_eq!(Cron::parse("0 */6 * * *"), Cron::parse("0 0,6,12,18 * * *"));
        assert_eq!(Cron::parse("0 3/10 * * *"), Cron::parse("0 3,13,23 * * *"));
        assert_eq!(Cron::parse("0-0 0,0 * * *"), Cron::parse("0 0 * * *"));
    }

    #[test]
    fn names_and_sunday() {
        assert_eq!(Cron::parse("0 0 * JAN-mar sun"), Cron::parse("0 0 * 1-3 0"));
        assert_eq!(Cron::parse("0 12 * jul,Dec Mon-FRI"), Cron::parse("0 12 * 7,12 1-5"));
        assert_eq!(Cron::parse("0 0 * * 7"), Cron::parse("0 0 * * 0"));
        // 2026-11-28 is a Saturday.
        for expr in ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun"] {
            check(expr, "2026-11-28 00:00", &["2026-11-29 00:00", "2026-12-06 00:00"]);
        }
        let want = [
            "2026-11-29 00:00",
            "2026-12-04 00:00",
            "2026-12-05 00:00",
            "2026-12-06 00:00",
        ];
        check("0 0 * * 5-7", "2026-11-28 00:00", &want);
        check(
            "0 0 1 dec *",
            "2026-01-05 00:00",
            &["2026-12-01 00:00", "2027-12-01 00:00"],
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: the 13th or any Friday.
        let want = [
            "2026-12-04 00:00",
            "2026-12-11 00:00",
            "2026-12-13 00:00",
            "2026-12-18 00:00",
        ];
        check("0 0 13 * 5", "2026-11-28 00:00", &want);
        // One of them `*`: only the other counts.
        check("0 0 13 * *", "2026-11-28 00:00", &["2026-12-13 00:00"]);
        check("0 0 * * 5", "2026-11-28 00:00", &["2026-12-04 00:00"]);
        // As in Vixie cron, a field starting with `*` (here `*/2`) counts as `*`, so both must
        // match: an odd day that is a Monday (Monday 2026-11-30 is even).
        check("0 0 */2 * mon", "2026-11-28 00:00", &["2026-12-07 00:00"]);
    }

    #[test]
    fn rollovers_leap_days_and_never() {
        check(
            "0 0 1 * *",
            "2026-12-15 00:00",
            &["2027-01-01 00:00", "2027-02-01 00:00"],
        );
        check(
            "59 23 31 * *",
            "2026-04-01 00:00",
            &["2026-05-31 23:59", "2026-07-31 23:59"],
        );
        check("30 12 * * *", "2026-02-28 12:30", &["2026-03-01 12:30"]);
        check(
            "0 0 29 2 *",
            "2026-01-01 00:00",
            &["2028-02-29 00:00", "2032-02-29 00:00"],
        );
        for never in ["0 0 31 4 *", "0 0 30 2 *", "0 0 31 2,4,6,9,11 *"] {
            assert_eq!(
                Cron::parse(never).unwrap().next_after(ts("2026-01-01 00:00")),
                None,
                "{never}"
            );
        }
    }

    #[test]
    fn macros() {
        for (name, expr) in [
            ("@hourly", "0 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            (" @weekly ", "0 0 * * 0"),
            ("@monthly", "0 0 1 * *"),
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
        ] {
            assert_eq!(Cron::parse(name), Cron::parse(expr), "{name}");
        }
        check("@yearly", "2026-01-01 00:00", &["2027-01-01 00:00"]);
        assert!(Cron::parse("@reboot").unwrap_err().contains("@reboot"));
    }

    #[test]
    fn malformed_expressions_name_the_field() {
        assert_eq!(
            Cron::parse("* 25 * * *").unwrap_err(),
            r#"the hour field "25": 25 is outside 0-23"#
        );
        for (expr, wanted) in [
            ("", "expected 5 fields"),
            ("* * * *", "found 4"),
            ("* * * * * *", "found 6"),
            ("60 * * * *", "minute field"),
            ("a * * * *", "minute field"),
            ("5-1 * * * *", "minute field"),
            ("1-2-3 * * * *", "minute field"),
            ("*/0 * * * *", "minute field"),
            ("99999999999 * * * *", "minute field"),
            ("* 24 * * *", "hour field"),
            ("* 1,,2 * * *", "hour field"),
            ("* 1, * * *", "hour field"),
            ("* ,1 * * *", "hour field"),
            ("* */x * * *", "hour field"),
            ("* * 0 * *", "day-of-month field"),
            ("* * 32 * *", "day-of-month field"),
            ("* * -1 * *", "day-of-month field"),
            ("* * 3- * *", "day-of-month field"),
            ("* * * 0 *", "month field"),
            ("* * * 13 *", "month field"),
            ("* * * foo *", "month field"),
            ("* * * sun *", "month field"),
            ("* * * * 8", "day-of-week field"),
            ("* * * * mon-xyz", "day-of-week field"),
            ("* * * * 1/", "day-of-week field"),
            ("* * * * fri-mon", "day-of-week field"),
            ("* * * * jan", "day-of-week field"),
        ] {
            let err = Cron::parse(expr).unwrap_err();
            assert!(err.contains(wanted), "{expr:?}: {err}");
        }
    }
}
