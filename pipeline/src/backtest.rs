//! A backtest: the pipeline driven straight from ticks by a simulated broker in this thread, with
//! no socket, no bridge and no other thread between them.
//!
//! The broker fills as a replay's terminal simulator does ([`MarketTimeFills`]): a market order
//! decided on a tick fills at the first fillable quote of its symbol at or after its due time,
//! and its outcome reaches the pipeline before the first tick of that time. A replay over TCP
//! applies outcomes at the same point (`PipelineBuilder::market_time_fills`), so the two give
//! the same orders, deals and PnL on the same ticks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mtml_core::{ExecutionEvent, Fill, MarketTimeFills, OrderRequest, OrderSink, OrderType, Side, Symbol, Tick};
use mtml_decision::figures::FiguresBuilder;
use parking_lot::Mutex;

use crate::Pipeline;

/// Where the pipeline's orders wait for the broker: give [`BrokerInbox::sink`] to the
/// [`crate::PipelineBuilder`] and the inbox to [`run`].
#[derive(Debug, Clone, Default)]
pub struct BrokerInbox(Arc<Mutex<Vec<OrderRequest>>>);

impl BrokerInbox {
    /// The order sink the pipeline submits to.
    pub fn sink(&self) -> Box<dyn OrderSink> {
        let inbox = Arc::clone(&self.0);
        Box::new(move |order: OrderRequest| inbox.lock().push(order))
    }

    fn take(&self) -> Vec<OrderRequest> {
        std::mem::take(&mut *self.0.lock())
    }
}

/// The simulated account the broker reports at the start, as a terminal's snapshot does.
#[derive(Debug, Clone)]
pub struct BrokerAccount {
    /// `login@server`.
    pub account: Arc<str>,
    /// Balance (and equity), account currency.
    pub balance: f64,
    /// Leverage (100 for 1:100).
    pub leverage: u32,
}

/// A deal the broker executed.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestDeal {
    /// The order's client order id.
    pub client_order_id: String,
    /// Symbol.
    pub symbol: Symbol,
    /// Market time of the quote it filled at, UTC ms.
    pub time_msc: i64,
    /// Lots, positive for a buy.
    pub lots: f64,
    /// Price.
    pub price: f64,
}

/// Runs `ticks` through `pipeline`, filling its orders by `fills` with prices of `digits`
/// decimals per symbol, and marks the deals at every quote's mid in `figures`; returns the
/// deals in the order they were made. An order that never meets a fillable quote (the ticks
/// end first) is rejected at the end, as the simulator rejects it. Memory: the ticks read ahead
/// for a due order's quote, never the whole file.
pub fn run(
    pipeline: &mut Pipeline,
    inbox: &BrokerInbox,
    ticks: impl IntoIterator<Item = Tick>,
    fills: MarketTimeFills,
    digits: &HashMap<Symbol, u8>,
    account: &BrokerAccount,
    figures: &mut FiguresBuilder,
) -> Vec<BacktestDeal> {
    let mut broker = Broker { fills, digits, waiting: Vec::new(), deals: Vec::new(), next_ticket: 1_000 };
    pipeline.on_event(&ExecutionEvent::Account {
        account: Arc::clone(&account.account),
        leverage: account.leverage,
        balance: account.balance,
        equity: account.balance,
        margin: 0.0,
        free_margin: account.balance,
    });
    // Ticks read but not yet given to the pipeline: a due order may need a quote further on.
    let mut ahead: VecDeque<Tick> = VecDeque::new();
    let mut source = ticks.into_iter();
    // The broker's deals already given to the figures.
    let mut seen = 0;
    while let Some(tick) = ahead.pop_front().or_else(|| source.next()) {
        let tick = if broker.waiting.iter().any(|(_, due)| *due <= tick.time_msc) {
            ahead.push_front(tick);
            broker.settle_due(pipeline, &mut ahead, &mut source);
            let Some(tick) = ahead.pop_front() else { break };
            tick
        } else {
            tick
        };
        pipeline.on_tick(&tick);
        for order in inbox.take() {
            broker.accept(pipeline, order);
        }
        for deal in &broker.deals[seen..] {
            figures.deal(deal.time_msc, deal.symbol.as_str(), deal.lots, deal.price);
        }
        seen = broker.deals.len();
        figures.mark(tick.time_msc, tick.symbol.as_str(), tick.mid());
    }
    for deal in &broker.deals[seen..] {
        figures.deal(deal.time_msc, deal.symbol.as_str(), deal.lots, deal.price);
    }
    // The ticks ended: what is still waiting never met a quote.
    for (order, _) in std::mem::take(&mut broker.waiting) {
        pipeline.on_event(&ExecutionEvent::Rejected {
            chain_id: order.chain_id,
            client_order_id: order.client_order_id,
            retcode: 10018,
            reason: format!("no quote for {} after {}: the ticks ended", order.symbol, order.market_time_msc),
        });
    }
    broker.deals
}

struct Broker<'a> {
    fills: MarketTimeFills,
    digits: &'a HashMap<Symbol, u8>,
    /// Market orders waiting for their due time, in the order they came.
    waiting: Vec<(OrderRequest, i64)>,
    deals: Vec<BacktestDeal>,
    next_ticket: u64,
}

impl Broker<'_> {
    /// Takes an order: a market order waits for its due time; anything else is refused (the
    /// pipeline sends market orders only).
    fn accept(&mut self, pipeline: &mut Pipeline, order: OrderRequest) {
        if order.order_type != OrderType::Market {
            pipeline.on_event(&ExecutionEvent::Rejected {
                chain_id: order.chain_id,
                client_order_id: order.client_order_id,
                retcode: 10030,
                reason: "the backtest broker fills market orders only".into(),
            });
            return;
        }
        let due = self.fills.due_ms(order.market_time_msc);
        self.waiting.push((order, due));
    }

    /// Fills every waiting order due by the time of the tick at the front of `ahead`, at the
    /// first fillable quote of its symbol from there on (reading further ticks into `ahead` when
    /// needed), and tells the pipeline.
    fn settle_due(&mut self, pipeline: &mut Pipeline, ahead: &mut VecDeque<Tick>, source: &mut impl Iterator<Item = Tick>) {
        let now = ahead.front().map_or(i64::MAX, |t| t.time_msc);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting).into_iter().partition(|(_, due)| *due <= now);
        self.waiting = later;
        for (order, due) in due {
            let mut at = 0;
            let quote = loop {
                if at == ahead.len() {
                    match source.next() {
                        Some(tick) => ahead.push_back(tick),
                        None => break None,
                    }
                }
                let t = &ahead[at];
                if t.symbol == order.symbol && t.time_msc >= due && MarketTimeFills::fillable(t.bid, t.ask) {
                    break Some((t.bid, t.ask, t.time_msc));
                }
                at += 1;
            };
            let Some((bid, ask, time_msc)) = quote else {
                // No quote to come: refused at the end, with the others still waiting.
                self.waiting.push((order, i64::MAX));
                continue;
            };
            let digits = self.digits.get(&order.symbol).copied().unwrap_or(5);
            let buy = order.side == Side::Buy;
            let price = self.fills.price(buy, bid, ask, digits);
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            pipeline.on_event(&ExecutionEvent::Acked { chain_id: order.chain_id, client_order_id: order.client_order_id.clone(), ticket, volume: order.volume });
            pipeline.on_event(&ExecutionEvent::Filled(Fill {
                chain_id: order.chain_id,
                client_order_id: order.client_order_id.clone(),
                ticket,
                symbol: order.symbol.clone(),
                side: order.side,
                volume: order.volume,
                price,
                time_msc,
            }));
            self.deals.push(BacktestDeal {
                client_order_id: order.client_order_id,
                symbol: order.symbol,
                time_msc,
                lots: if buy { order.volume } else { -order.volume },
                price,
            });
        }
    }
}
