-- dim_site: sites the connector still has.
with sites as (
    select * from staging.stg_site
),

live_sites as (
    select
        site_id,
        name,
        site_type,
        timezone,
        latitude,
        longitude,
        synced_at
    from sites
    where not is_deleted
)

select * from live_sites
