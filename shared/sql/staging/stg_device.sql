-- stg_device: the only reader of raw.device. The connector soft-deletes a decommissioned device's
-- row after upserting it with status = 'decommissioned' and decommissioned_at: such a row is a
-- decommissioning (the device's history stays); any other deleted row was removed by the vendor.
with source as (
    select * from raw.device
),

renamed as (
    select
        -- ids
        cast(device_id as string) as device_id,
        cast(site_id as string) as site_id,

        -- attributes
        cast(name as string) as name,
        cast(meter_type as string) as meter_type,

        -- numerics
        cast(nominal_voltage as float64) as nominal_voltage,
        cast(interval_minutes as int64) as interval_minutes,

        -- timestamps
        cast(installed_at as timestamp) as installed_at,
        cast(decommissioned_at as timestamp) as decommissioned_at,

        -- flags
        coalesce(status = 'decommissioned' or decommissioned_at is not null, false) as is_decommissioned,

        -- connector
        cast(_fivetran_synced as timestamp) as synced_at,
        coalesce(_fivetran_deleted, false) as is_deleted
    from source
),

classified as (
    select
        *,
        -- removed by the vendor: gone with its readings (a decommissioning is not a removal)
        is_deleted and not is_decommissioned as is_removed
    from renamed
)

select * from classified
