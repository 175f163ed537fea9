use std::sync::atomic::{AtomicI64, Ordering};

/// Bounds reissued requests: every first attempt deposits a fraction of a token,
/// every reissue withdraws a whole one, so retries stay near `ratio` of the traffic
/// (plus a reserve for quiet pools). This keeps a failing pool from being hit by
/// a retry storm.
pub struct RetryBudget {
    /// Tokens, in thousandths.
    balance: AtomicI64,
    deposit: i64,
    cap: i64,
}

const TOKEN: i64 = 1000;

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(0.2, 100)
    }
}

impl RetryBudget {
    /// `ratio` of first attempts may be reissued; `reserve` reissues are allowed up front.
    pub fn new(ratio: f64, reserve: u32) -> RetryBudget {
        let cap = reserve as i64 * TOKEN;
        RetryBudget {
            balance: AtomicI64::new(cap),
            deposit: (ratio * TOKEN as f64) as i64,
            cap,
        }
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        let _ = self.balance.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            (b < self.cap).then(|| (b + self.deposit).min(self.cap))
        });
    }

    /// Takes a token for a reissue; false when the budget is spent.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= TOKEN).then_some(b - TOKEN)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_then_ratio() {
        let budget = RetryBudget::new(0.5, 2);
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(budget.withdraw());
    }
}
