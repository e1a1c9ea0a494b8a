-- dim_device: every device the vendor has not removed, with its site's type and time zone. A
-- decommissioned device stays (is_active false, decommissioned_at set): its history is still ours.
with devices as (
    select * from staging.stg_device
),

sites as (
    select * from staging.stg_site
),

live_devices as (
    select * from devices
    where not is_removed
),

with_site as (
    select
        live_devices.device_id,
        live_devices.site_id,
        live_devices.name,
        live_devices.meter_type,
        live_devices.nominal_voltage,
        live_devices.interval_minutes,
        live_devices.installed_at,
        live_devices.decommissioned_at,
        not live_devices.is_decommissioned as is_active,
        sites.site_type,
        sites.timezone,
        live_devices.synced_at
    from live_devices
    left join sites
        on live_devices.site_id = sites.site_id and not sites.is_deleted
)

select * from with_site
