-- stg_meter_type: what each meter type's register does, declared here (a seed, one row per type).
--   register_max_wh: the register counts modulo this (a wrap past it is a rollover); NULL = never
--     wraps.
--   reset_threshold_wh: a decrease to at most this is a reset (the meter restarted from zero and
--     has counted up to one interval since); it sits above a large meter's energy in one interval.
-- The 'default' row applies to a meter type not listed.
with declared as (
    select
        'default' as meter_type,
        cast(null as float64) as register_max_wh,
        cast(50000 as float64) as reset_threshold_wh
    union all
    -- a 6-digit kWh register: 999,999.999 kWh, then 0
    select 'single_phase', cast(1000000000 as float64), cast(50000 as float64)
    union all
    -- a 7-digit kWh register
    select 'three_phase', cast(10000000000 as float64), cast(50000 as float64)
)

select * from declared
