-- fct_reading: one row per device and reading in [@window_start, @window_end), deduplicated, with
-- connector deletes removed (a decommissioned device keeps its readings; a device the vendor
-- removed loses them) and the interval energy derived from the cumulative register.
-- A reading at t closes the interval (previous reading, t]: its energy, and its power, temperature
-- and occupancy samples, describe that interval, so `hour` is the UTC hour the interval ends in
-- (the hour holding the instant just before t). hourly_consumption spreads the energy over every
-- hour the interval covers. The previous reading is looked up at most 24 h back: after a longer
-- gap the reading closes no known interval (previous_reading_at, interval_s and energy NULL)
-- rather than lumping days of energy into one hour.
-- Register decreases (per meter type, see stg_meter_type): a wrap at the register maximum is a
-- rollover (energy modulo the maximum), a drop to near zero a reset (energy = the new value), any
-- other decrease a correction (energy NULL, flagged in data_quality; the next interval counts
-- from the corrected value).
-- Only rows synced after @modelled_through are read from raw; the window's other readings are the
-- ones already modelled, read back from fct_reading (partitioned and sorted by reading_at). Raw is
-- laid out in sync order (partitioned by _fivetran_synced on BigQuery; a backfill lands device by
-- device), so a reading_at predicate alone prunes none of it: every refresh read all of raw.
-- Raw holds one row per (device_id, timestamp), its primary key, so a key synced again (an update
-- or a delete) supersedes its modelled row. A full rebuild, and a device whose dimension row
-- changed, pass the start of time: everything then comes from raw and nothing from fct_reading.
with changed_raw as (
    select * from staging.stg_reading
    where
        synced_at > @modelled_through
        and reading_at >= timestamp_sub(@window_start, interval 24 hour)
        and reading_at < @window_end
),

modelled as (
    select
        modelled.device_id,
        modelled.reading_at,
        modelled.received_at,
        modelled.power_w,
        modelled.register_wh,
        modelled.voltage,
        modelled.temp_c,
        modelled.occupancy,
        modelled.synced_at,
        false as is_deleted
    from energy_analytics.fct_reading as modelled
    where
        modelled.synced_at <= @modelled_through
        and modelled.reading_at >= timestamp_sub(@window_start, interval 24 hour)
        and modelled.reading_at < @window_end
        and not exists (
            select 1 from changed_raw
            where changed_raw.device_id = modelled.device_id and changed_raw.reading_at = modelled.reading_at
        )
),

readings as (
    select * from changed_raw
    union all
    select * from modelled
),

devices as (
    select * from staging.stg_device
),

meter_types as (
    select * from staging.stg_meter_type
),

register_rules as (
    select
        devices.device_id,
        coalesce(declared.register_max_wh, fallback.register_max_wh) as register_max_wh,
        coalesce(declared.reset_threshold_wh, fallback.reset_threshold_wh) as reset_threshold_wh
    from devices
    left join meter_types as declared
        on devices.meter_type = declared.meter_type
    cross join (select * from meter_types where meter_type = 'default') as fallback
    where not devices.is_removed
),

live_readings as (
    select
        readings.*,
        register_rules.register_max_wh,
        register_rules.reset_threshold_wh
    from readings
    inner join register_rules
        on readings.device_id = register_rules.device_id
    where not readings.is_deleted
),

deduplicated as (
    select * from live_readings
    -- GoogleSQL allows QUALIFY only beside WHERE, GROUP BY or HAVING
    where true
    qualify row_number() over (
        partition by device_id, reading_at
        order by synced_at desc, received_at desc
    ) = 1
),

with_lag as (
    select
        *,
        lag(reading_at) over by_time as lag_reading_at,
        lag(register_wh) over by_time as lag_register_wh
    from deduplicated
    window by_time as (partition by device_id order by reading_at)
),

-- the previous reading counts only within 24 h (the lag above may see further back in a full build
-- than in an incremental one, so anything beyond is dropped to keep both the same)
with_previous as (
    select
        *,
        case
            when timestamp_diff(reading_at, lag_reading_at, second) <= 86400 then lag_reading_at
        end as previous_reading_at,
        case
            when timestamp_diff(reading_at, lag_reading_at, second) <= 86400 then lag_register_wh
        end as previous_register_wh
    from with_lag
),

classified as (
    select
        *,
        timestamp_diff(reading_at, previous_reading_at, second) as interval_s,
        case
            when previous_register_wh is null or register_wh >= previous_register_wh then null
            when
                register_max_wh is not null
                and previous_register_wh >= register_max_wh - reset_threshold_wh
                and register_wh <= reset_threshold_wh
                then 'rollover'
            when register_wh <= reset_threshold_wh then 'reset'
            when register_wh < previous_register_wh then 'correction'
        end as register_event
    from with_previous
),

interval_energy as (
    select
        -- ids
        device_id,

        -- timestamps
        reading_at,
        timestamp_trunc(timestamp_sub(reading_at, interval 1 microsecond), hour) as hour,
        previous_reading_at,

        -- measures
        power_w,
        register_wh,
        previous_register_wh,
        case
            when previous_reading_at is null then null
            when register_event is null then register_wh - previous_register_wh
            when register_event = 'rollover' then register_wh + register_max_wh - previous_register_wh
            when register_event = 'reset' then register_wh
        end as energy_wh,
        interval_s,
        coalesce(register_event = 'reset', false) as is_register_reset,
        register_event,
        voltage,
        temp_c,
        occupancy,

        -- connector
        received_at,
        synced_at
    from classified
),

in_window as (
    select * from interval_energy
    where reading_at >= @window_start and reading_at < @window_end
)

select * from in_window
