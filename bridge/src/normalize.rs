//! Orders fitted to what the broker allows for the symbol, before they leave the bridge.
//!
//! A broker refuses an order whose volume is off the symbol's step, outside its min and max, or
//! whose price sits inside the stops level, with a retcode the trader then has to decode. The
//! bridge knows the symbol's capabilities from the terminal's SYMBOL message, so it fits the order
//! (volume down to the step, prices to the digits) or refuses it here, with a reason that names
//! the limit.

use mtml_core::{OrderRequest, OrderType, Side};

use crate::wire::{Px, SymbolSpec};

/// `SYMBOL_TRADE_MODE_DISABLED`.
const TRADE_MODE_DISABLED: u32 = 0;
/// `SYMBOL_TRADE_MODE_CLOSEONLY`.
const TRADE_MODE_CLOSE_ONLY: u32 = 3;

/// Why an order cannot be fitted to its symbol; the text names the limit, and is what the
/// order's rejection says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unfit(pub String);

/// An order fitted to the symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// Volume, a multiple of the step within min and max.
    pub volume: Px,
    /// Limit or stop price with the symbol's digits (0 for market orders).
    pub price: Px,
}

/// Fits `order` to `spec`. `quote` is the symbol's last (bid, ask), needed to check pending
/// order prices against the stops level.
pub fn normalize(
    order: &OrderRequest,
    spec: &SymbolSpec,
    quote: Option<(f64, f64)>,
) -> Result<Normalized, Unfit> {
    let name = &spec.name;
    match spec.trade_mode {
        TRADE_MODE_DISABLED => return Err(Unfit(format!("trading is disabled for {name}"))),
        TRADE_MODE_CLOSE_ONLY => return Err(Unfit(format!("{name} is close-only at this broker"))),
        _ => {}
    }
    let step = spec.volume_step.value;
    if !(order.volume.is_finite() && order.volume > 0.0) {
        return Err(Unfit(format!("volume {} is not a positive number", order.volume)));
    }
    if step.is_nan() || step <= 0.0 {
        return Err(Unfit(format!("{name} reports a volume step of {step}")));
    }
    // Round down to the step: never trade more than asked. The epsilon absorbs 0.3 / 0.1 = 2.999….
    let steps = (order.volume / step + 1e-9).floor();
    let volume = steps * step;
    let decimals = spec.volume_step.decimals;
    let fmt = |v: f64| format!("{v:.*}", usize::from(decimals));
    if volume < spec.volume_min.value - 1e-12 {
        return Err(Unfit(format!(
            "volume {} is below the minimum {} of {name}",
            order.volume,
            fmt(spec.volume_min.value)
        )));
    }
    if volume > spec.volume_max.value + 1e-12 {
        return Err(Unfit(format!(
            "volume {} exceeds the maximum {} of {name}",
            order.volume,
            fmt(spec.volume_max.value)
        )));
    }
    let volume = Px::new(volume, decimals);
    if order.order_type == OrderType::Market {
        return Ok(Normalized { volume, price: Px::new(0.0, spec.digits) });
    }
    let scale = 10f64.powi(i32::from(spec.digits));
    let price = (order.price * scale).round() / scale;
    if price.is_nan() || price <= 0.0 {
        return Err(Unfit(format!("{:?} order needs a positive price, got {}", order.order_type, order.price)));
    }
    let Some((bid, ask)) = quote else {
        return Err(Unfit(format!("no quote for {name} yet to check the pending order price against")));
    };
    // Buy orders trigger on the ask, sell orders on the bid.
    let market = match order.side {
        Side::Buy => ask,
        Side::Sell => bid,
    };
    let distance_points = ((price - market).abs() * scale).round();
    if distance_points < f64::from(spec.stops_level) {
        return Err(Unfit(format!(
            "price {price:.*} is {distance_points} points from the market {market:.*}, inside the stops level of {} points of {name}",
            usize::from(spec.digits),
            usize::from(spec.digits),
            spec.stops_level
        )));
    }
    let wrong_side = match (order.side, order.order_type) {
        (Side::Buy, OrderType::Limit) | (Side::Sell, OrderType::Stop) => price > market,
        (Side::Sell, OrderType::Limit) | (Side::Buy, OrderType::Stop) => price < market,
        (_, OrderType::Market) => false,
    };
    if wrong_side {
        return Err(Unfit(format!(
            "{:?} {:?} at {price:.*} is on the wrong side of the market {market:.*}",
            order.side,
            order.order_type,
            usize::from(spec.digits),
            usize::from(spec.digits)
        )));
    }
    Ok(Normalized { volume, price: Px::new(price, spec.digits) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtml_core::{ChainIdGenerator, Symbol};
    use rstest::rstest;

    fn spec() -> SymbolSpec {
        SymbolSpec {
            name: "EURUSDm".into(),
            digits: 5,
            point: Px::new(0.00001, 5),
            volume_min: Px::new(0.01, 2),
            volume_step: Px::new(0.01, 2),
            volume_max: Px::new(50.0, 2),
            stops_level: 10,
            freeze_level: 0,
            filling_modes: 2,
            trade_mode: 4,
        }
    }

    fn order(side: Side, order_type: OrderType, volume: f64, price: f64) -> OrderRequest {
        OrderRequest {
            chain_id: ChainIdGenerator::with_prefix(1).next_id(),
            client_order_id: "c-1".into(),
            account: None,
            symbol: Symbol::new("EURUSD"),
            side,
            order_type,
            volume,
            price,
            decision_price: 0.0,
            origin_received_ns: 0,
            market_time_msc: 0,
        }
    }

    #[rstest]
    #[case(0.1, Ok(0.1))]
    #[case(0.3, Ok(0.3))]
    #[case(0.019, Ok(0.01))]
    #[case(50.0, Ok(50.0))]
    #[case(0.009, Err("volume 0.009 is below the minimum 0.01 of EURUSDm"))]
    #[case(50.01, Err("volume 50.01 exceeds the maximum 50.00 of EURUSDm"))]
    #[case(-1.0, Err("volume -1 is not a positive number"))]
    #[case(f64::NAN, Err("volume NaN is not a positive number"))]
    fn volumes_round_down_to_the_step_within_min_and_max(
        #[case] volume: f64,
        #[case] expected: Result<f64, &str>,
    ) {
        let result = normalize(&order(Side::Buy, OrderType::Market, volume, 0.0), &spec(), None);
        match expected {
            Ok(v) => {
                let n = result.unwrap();
                assert!((n.volume.value - v).abs() < 1e-12, "{n:?}");
                assert_eq!(n.volume.decimals, 2);
            }
            Err(reason) => assert_eq!(result.unwrap_err().to_string(), reason),
        }
    }

    #[rstest]
    #[case(Side::Buy, OrderType::Limit, 1.38689, Ok(1.38689))]
    #[case(Side::Buy, OrderType::Limit, 1.386894, Ok(1.38689))]
    #[case(Side::Buy, OrderType::Limit, 1.38691, Err("inside the stops level of 10 points"))]
    #[case(Side::Buy, OrderType::Limit, 1.38800, Err("wrong side of the market"))]
    #[case(Side::Sell, OrderType::Limit, 1.38700, Ok(1.387))]
    #[case(Side::Sell, OrderType::Stop, 1.38600, Ok(1.386))]
    #[case(Side::Buy, OrderType::Stop, 1.38600, Err("wrong side of the market"))]
    fn pending_prices_respect_digits_side_and_stops_level(
        #[case] side: Side,
        #[case] order_type: OrderType,
        #[case] price: f64,
        #[case] expected: Result<f64, &str>,
    ) {
        // Bid 1.38680, ask 1.38699.
        let result = normalize(&order(side, order_type, 0.1, price), &spec(), Some((1.3868, 1.38699)));
        match expected {
            Ok(p) => assert_eq!(result.unwrap().price, Px::new(p, 5)),
            Err(reason) => assert!(result.as_ref().unwrap_err().to_string().contains(reason), "{result:?}"),
        }
    }

    #[test]
    fn disabled_and_close_only_symbols_are_refused() {
        let mut disabled = spec();
        disabled.trade_mode = 0;
        let o = order(Side::Buy, OrderType::Market, 0.1, 0.0);
        assert_eq!(normalize(&o, &disabled, None).unwrap_err().to_string(), "trading is disabled for EURUSDm");
        disabled.trade_mode = 3;
        assert_eq!(normalize(&o, &disabled, None).unwrap_err().to_string(), "EURUSDm is close-only at this broker");
    }
}
